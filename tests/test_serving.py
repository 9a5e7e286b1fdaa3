"""Using a trained run: predict on files, folders and videos, export with parity, the
streaming scorer and the scoring server (vadjax/serving)."""

import concurrent.futures
import http.client
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from conftest import assert_exports_score_as_the_run, figure
from vadjax.data import formats
from vadjax.registry import UserError
from vadjax.serving import inputs as inputs_lib, loadtest
from vadjax.serving.predict import Predictor, predict, threshold_of
from vadjax.serving.server import make_server
from vadjax.serving.stream import StreamScorer

ROOT = os.path.dirname(os.path.dirname(__file__))


def _cli(module, *args):
  proc = subprocess.run([sys.executable, '-m', f'experiments.{module}', *args],
                        capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc


def _post_image(port, frame):
  conn = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
  try:
    conn.request('POST', '/score', body=loadtest.png(frame),
                 headers={'Content-Type': 'image/png'})
    return json.loads(conn.getresponse().read())['results'][0]['score']
  finally:
    conn.close()


def _rows(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _uint8(frames):
  return np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)


def _load_test(run, frames, clients, requests):
  """The loopback load test against a server of `run` started here; also checks that no
  valid request failed, every malformed one got its 4xx, the server is still up and
  scores concurrent requests' frames as the run does."""
  server = make_server(run, '127.0.0.1', 0)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  clip = len(run.image_shape) == 4
  try:
    headers, body = loadtest.valid_request(frames, clip)
    r = loadtest.run('127.0.0.1', server.server_address[1], headers, body, clients, requests,
                     clip_length=run.image_shape[0] if clip else 1)
    if not clip:      # distinct images from concurrent clients, batched together
      with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda f: _post_image(server.server_address[1], f), frames))
      np.testing.assert_allclose(got, run.score(frames)['score'], rtol=1e-6)
  finally:
    server.shutdown()
    server.server_close()
  assert r['failed'] == 0 and r['requests'] == clients * requests and r['up_at_end']
  assert r['malformed_rejected'] == len(r['malformed']), r['malformed']
  assert server.counts['failed'] == 0 and server.counts['rejected'] == len(r['malformed'])


def test_threshold_by_name_or_number():
  t = {'gmean': 0.4, 'mean': 0.2}
  assert threshold_of(t, 'gmean') == ('gmean', 0.4)
  assert threshold_of(t, '0.75') == ('0.75', 0.75)
  for bad in ('best', 'nan', 'inf', ''):
    with pytest.raises(UserError, match='unknown threshold'):
      threshold_of(t, bad)


def test_inputs_are_found_by_kind(tmp_path):
  for name in ('b.png', 'a.png', 'notes.txt'):
    (tmp_path / name).write_bytes(b'x')
  (tmp_path / 'clip').mkdir()
  for name in ('f1.png', 'f0.png'):
    (tmp_path / 'clip' / name).write_bytes(b'x')
  (tmp_path / 'cam.avi').write_bytes(b'x')
  images = inputs_lib.find(str(tmp_path), sequences=False)
  assert [os.path.basename(i.name) for i in images] == ['a.png', 'b.png', 'cam.avi', 'f0.png',
                                                        'f1.png']
  assert [i.sequence for i in images] == [False, False, True, False, False]
  videos = inputs_lib.find(str(tmp_path), sequences=True)
  assert [len(i.paths) for i in videos] == [2, 1, 2] and all(i.sequence for i in videos)
  assert [os.path.basename(p) for p in videos[2].paths] == ['f0.png', 'f1.png']
  with pytest.raises(UserError, match='not an image'):
    inputs_lib.find(str(tmp_path / 'notes.txt'), sequences=False)
  with pytest.raises(UserError, match='does not exist'):
    inputs_lib.find(str(tmp_path / 'missing'), sequences=False)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(UserError, match='no images'):
    inputs_lib.find(str(tmp_path / 'empty'), sequences=False)


@pytest.fixture(scope='session')   # once per worker, whatever the test order
def image_run(tmp_path_factory):
  """BCAE1 on digits class 1, one epoch, and PNGs of its first test images."""
  from experiments.configs import reconstruction
  from vadjax.train import load_splits, restore, train_and_evaluate
  workdir = tmp_path_factory.mktemp('image_run')
  c = reconstruction.get_config('quick')
  c.unlock()
  c.model_kwargs.filters = (8, 8, 8, 16, 16)
  c.update(dict(num_devices=1, num_epochs=1))
  c.lock()
  train_and_evaluate(c, str(workdir))
  run = restore(str(workdir))
  test = load_splits(run.config, run.category).test
  images = _uint8(np.stack([test[i]['image'] for i in range(12)]))
  folder = workdir / 'inputs'
  folder.mkdir()
  for i, a in enumerate(images):
    Image.fromarray(a[..., 0]).save(folder / f'{i:02d}.png')
  return workdir, run, images.astype(np.float32) / 255.0


def test_predict_on_a_folder_with_thresholds_and_overlays(image_run, tmp_path):
  workdir, run, frames = image_run
  proc = _cli('predict', f'--workdir={workdir}', f'--input={workdir}/inputs',
              f'--output={tmp_path}/low.jsonl', '--threshold=-1e9',
              f'--overlays={tmp_path}/overlays')
  assert proc.stderr.splitlines()[-1] == '12 frames of 12 inputs scored, 12 anomalous'
  with open(tmp_path / 'high.jsonl', 'w') as f:
    predict(Predictor(run, '1e9'), f'{workdir}/inputs', f, progress=False)
  low, high = _rows(tmp_path / 'low.jsonl'), _rows(tmp_path / 'high.jsonl')
  want = run.score(frames)['score']
  assert [r['input'] for r in low] == [f'{workdir}/inputs/{i:02d}.png' for i in range(12)]
  np.testing.assert_allclose([r['score'] for r in low], want, rtol=1e-6)
  np.testing.assert_allclose([r['normalized'] for r in low], run.normalizer(want), rtol=1e-6)
  # the threshold changes the decisions and nothing else
  assert all(r['anomalous'] for r in low) and not any(r['anomalous'] for r in high)
  strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith(('anomalous',
                                                                        'threshold'))}
                        for r in rows]
  assert strip(low) == strip(high)
  assert sorted(os.listdir(tmp_path / 'overlays')) == [f'{i:02d}.png' for i in range(12)]
  figure(tmp_path / 'overlays' / '00.png')
  named = Predictor(run, 'gmean').rows('x', Predictor(run, 'gmean').decide(want), False)
  assert [r['anomalous'] for r in named] == list(run.normalizer(want) > run.thresholds['gmean'])


def test_predict_refuses_bad_inputs_with_one_line(image_run, tmp_path):
  workdir, _, _ = image_run
  (tmp_path / 'ok.png').write_bytes((workdir / 'inputs' / '00.png').read_bytes())
  (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
  with open(tmp_path / 'out.jsonl', 'w') as f, pytest.raises(UserError, match='broken.png'):
    predict(Predictor(image_run[1]), str(tmp_path), f, progress=False)
  with pytest.raises(UserError, match='unknown threshold'):
    Predictor(image_run[1], 'best')


def test_image_run_exports_with_parity(image_run):
  assert_exports_score_as_the_run(image_run[0])


def test_export_keeps_other_files(image_run, tmp_path):
  from vadjax.serving.export import export
  (tmp_path / 'mine.txt').write_text('keep')
  with pytest.raises(UserError, match='not an earlier export'):
    export(image_run[1], 'stablehlo', str(tmp_path))
  with pytest.raises(UserError, match='unknown export format'):
    export(image_run[1], 'tflite', str(tmp_path / 'x'))
  assert (tmp_path / 'mine.txt').read_text() == 'keep'


def test_server_under_load_rejects_every_malformed_request(image_run):
  _, run, frames = image_run
  _load_test(run, frames, clients=4, requests=5)


@pytest.fixture(scope='session')   # once per worker, whatever the test order
def clip_run(tmp_path_factory):
  """Seq2Seq CGRU on walkway clips, one epoch, and its first test video as a lossless
  video file and as a folder of frames."""
  from experiments.configs import conv_rnn
  from vadjax.data import DATASETS
  from vadjax.train import restore, train_and_evaluate
  workdir = tmp_path_factory.mktemp('clip_run')
  c = conv_rnn.get_config('quick,model=seq2seq_cgru')
  c.unlock()
  c.update(dict(num_epochs=1, num_devices=1))
  c.lock()
  train_and_evaluate(c, str(workdir))
  run = restore(str(workdir))
  video = DATASETS.get(c.dataset)(run.category, c.image_size, c.data).test.videos[0]
  frames = _uint8(video.frames[:20])
  formats.write_video(str(workdir / 'test.avi'), list(np.repeat(frames, 3, -1)), codec='png')
  (workdir / 'frames').mkdir()
  for i, a in enumerate(frames):
    Image.fromarray(a[..., 0]).save(workdir / 'frames' / f'{i:03d}.png')
  return workdir, run, frames.astype(np.float32) / 255.0


def test_predict_on_a_video_scores_clips_as_evaluation(clip_run, tmp_path):
  from vadjax.data.video import ClipSource, Video
  workdir, run, frames = clip_run
  with open(tmp_path / 'video.jsonl', 'w') as f:
    predict(Predictor(run), f'{workdir}/test.avi', f, f'{tmp_path}/overlays', progress=False)
  with open(tmp_path / 'frames.jsonl', 'w') as f:
    predict(Predictor(run), f'{workdir}/frames', f, progress=False)
  video, folder = _rows(tmp_path / 'video.jsonl'), _rows(tmp_path / 'frames.jsonl')
  zeros = np.zeros(len(frames), np.int32)
  want = run.score_source(ClipSource([Video(frames, zeros, zeros)], run.image_shape[0],
                                     per_frame=True))['score']
  assert [r['frame'] for r in video] == list(range(len(frames)))
  np.testing.assert_allclose([r['score'] for r in video], want, rtol=1e-6)
  np.testing.assert_allclose([r['score'] for r in folder], want, rtol=1e-6)
  overlay = formats.read_video(str(tmp_path / 'overlays' / 'test.mp4'))
  assert len(overlay) == len(frames) and overlay.std() > 10


def test_video_scored_in_chunks_equals_the_whole_video(clip_run):
  """`score_video` reads frames as it goes (a chunk and a clip of them at a time) and gives
  every frame the score and map of the evaluation path, whatever the chunk size, the
  video's ends included; a video shorter than a clip is a one-line error."""
  from vadjax.data.video import ClipSource, Video
  _, run, frames = clip_run
  zeros = np.zeros(len(frames), np.int32)
  length = run.image_shape[0]
  want = run.score_source(ClipSource([Video(frames, zeros, zeros)], length, per_frame=True))
  predictor, old = Predictor(run), run.config.eval_batch_size
  try:
    for chunk in (3, 7, 64):
      run.config.eval_batch_size = chunk
      pulled = []

      def source():
        for f in frames:
          pulled.append(1)
          yield f
      parts = []
      for first, s in predictor.score_video(source(), keep_maps=True):
        if not parts:          # the first chunk came before the video was read whole
          assert len(pulled) <= min(chunk, len(frames)) + length, (chunk, len(pulled))
        parts.append((first, s))
      assert [f for f, _ in parts] == list(range(0, len(frames), chunk))
      np.testing.assert_allclose(np.concatenate([s.raw for _, s in parts]), want['score'],
                                 rtol=1e-6)
      np.testing.assert_allclose(np.concatenate([s.pixel for _, s in parts]), want['pixel'],
                                 rtol=1e-5, atol=1e-7)
  finally:
    run.config.eval_batch_size = old
  with pytest.raises(UserError, match='shorter than one clip'):
    list(predictor.score_video(iter(frames[:length - 1])))


def test_streamed_scores_equal_offline_scores(clip_run):
  _, run, frames = clip_run
  offline = Predictor(run).score(frames, video=True)
  scorer = StreamScorer(run, smoothing=3)
  got = []
  for i, f in enumerate(frames):
    new = scorer.push(f)
    t = scorer.t
    # frame f is scored once the clip centred on it is complete
    assert [s.frame for s in new] == ([] if i < t - 1 else
                                      list(range(t // 2 + 1)) if i == t - 1 else
                                      [i - t + 1 + t // 2])
    got += new
  got += scorer.flush()
  assert [s.frame for s in got] == list(range(len(frames)))
  # batch-1 steps against padded batches of the offline path: float rounding only
  np.testing.assert_allclose([s.score for s in got], offline.raw, rtol=1e-5)
  norm = np.asarray([s.normalized for s in got])
  smooth = [norm[max(0, i - 2):i + 1].mean() for i in range(len(norm))]
  np.testing.assert_allclose([s.smoothed for s in got], smooth, rtol=1e-12)
  with pytest.raises(UserError, match='must be prepared'):
    scorer.push(frames[0][:8])


def test_clip_run_exports_with_parity(clip_run):
  assert_exports_score_as_the_run(clip_run[0])


def test_server_scores_frame_sequences(clip_run):
  _, run, frames = clip_run
  _load_test(run, frames[:10], clients=2, requests=2)
