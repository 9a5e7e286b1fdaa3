"""Using a trained run outside its training loop: predict on files, folders and videos
(`predict`), export to StableHLO / ONNX (`export`, loaded by `exported`), score a live
stream frame by frame (`stream`) and answer scoring requests over HTTP (`server`). Each
starts from `vadjax.train.restore(workdir)`."""
