"""Using a trained run: predict on files, folders and videos, export with parity, the
streaming scorer and the scoring server (vadjax/serving)."""

import concurrent.futures
import http.client
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import assert_exports_score_as_the_run, figure
from vadjax.data import formats
from vadjax.registry import UserError
from vadjax.serving import inputs as inputs_lib, loadtest
from vadjax.serving.files import predict
from vadjax.serving.predict import Predictor, buckets, threshold_of
from vadjax.serving.requests import Limits
from vadjax.serving.listen import running
from vadjax.serving.server import make_app
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


# small limits: every hostile case of the fuzz list stays cheap to build and to refuse
LIMITS = Limits(max_pixels=256 * 256, max_request_pixels=4 * 256 * 256, max_frames=64,
                timeout_s=1.0)


def _load_test(run, frames, clients, requests, caplog):
  """The loopback load test against a server of `run` started here: no valid request
  fails, every hostile or malformed one gets its 4xx (a stalled body a 408) and a valid
  request right after still succeeds; no 5xx, no traceback logged; concurrent requests'
  frames are scored as the run scores them."""
  app = make_app([run], LIMITS)
  state = app.state.vadjax
  clip = len(run.image_shape) == 4
  with running(app) as port, caplog.at_level('WARNING'):
    assert state.ready.wait(120)
    headers, body = loadtest.valid_request(frames, clip)
    r = loadtest.run('127.0.0.1', port, headers, body, clients, requests,
                     clip_length=run.image_shape[0] if clip else 1, limits=LIMITS)
    assert loadtest.stalled_request('127.0.0.1', port, 10) == 408
    served = next(iter(state.served.values())).predictor
    lone = loadtest.paired_latency(served, frames[:served.clip_length], port, headers, body,
                                   pairs=5)
    assert lone['lone_p50_ms'] > 0 and lone['request_compute_ms'] > 0
    assert loadtest.full_batch_ms(served, frames, port, repeats=1) > 0
    if not clip:      # distinct images from concurrent clients, batched together
      with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda f: _post_image(port, f), frames))
      np.testing.assert_allclose(got, run.score(frames)['score'], rtol=1e-5)
  assert r['failed'] == 0 and r['requests'] == clients * requests and r['up_at_end']
  assert r['malformed_rejected'] == len(r['malformed']), r['malformed']
  assert state.counts['failed'] == 0
  assert state.counts['rejected'] == len(r['malformed']) + 1     # + the stalled body
  assert not [x for x in caplog.records if x.exc_info or x.levelname == 'ERROR'], caplog.text


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


def test_server_under_load_rejects_every_hostile_request(image_run, caplog):
  _, run, frames = image_run
  _load_test(run, frames, clients=4, requests=5, caplog=caplog)


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
  predictor = Predictor(run)
  for chunk in (3, 7, 64):
    predictor.buckets = buckets(chunk)
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


def test_server_scores_frame_sequences(clip_run, caplog):
  _, run, frames = clip_run
  _load_test(run, frames[:10], clients=2, requests=2, caplog=caplog)


def test_lone_requests_run_at_batch_one_and_nothing_compiles_after_warm_up(image_run):
  _, run, frames = image_run
  assert buckets(32) == [1, 2, 4, 8, 16, 32] and buckets(12) == [1, 2, 4, 8, 12]
  p = Predictor(run)
  p.warm_up()
  compiled = p._fn._cache_size()
  assert compiled == len(p.buckets)
  seen, fn = [], p._fn
  p._fn = lambda v, x, *a: (seen.append(len(x)), fn(v, x, *a))[1]
  many = np.concatenate([frames] * (p.max_batch // len(frames) + 1))[:p.max_batch + 3]
  for n in (1, 3, len(many)):
    np.testing.assert_allclose(p.score_records(many[:n])['score'],
                               run.score(many[:n])['score'], rtol=1e-5)
  assert seen == [1, 4, p.max_batch, 4]
  assert fn._cache_size() == compiled


def _wait_ready(port, timeout=120):
  import time
  end = time.time() + timeout
  while time.time() < end:
    try:
      conn = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
      conn.request('GET', '/ready')
      if conn.getresponse().status == 200:
        return
    except OSError:
      pass
    time.sleep(0.2)
  raise AssertionError('the server did not become ready')


def test_sigterm_drains_in_flight_requests_finish(image_run):
  """SIGTERM: /ready and new requests answer 503 while a request already in flight (its
  body still arriving) finishes with 200; then the process exits."""
  import signal
  import socket
  import time
  workdir, _, frames = image_run
  proc = subprocess.Popen([sys.executable, '-m', 'experiments.serve', f'--workdir={workdir}',
                           '--port=0', '--drain_s=1', '--timeout_s=20'],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
  try:
    line = proc.stdout.readline()
    assert line.startswith('serving on http://127.0.0.1:'), (line, proc.stderr.read()[-2000:])
    port = int(line.rsplit(':', 1)[1])
    _wait_ready(port)
    body = loadtest.png(frames[0])
    flight = socket.create_connection(('127.0.0.1', port), timeout=30)
    flight.sendall(b'POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n'
                   + f'Content-Length: {len(body)}\r\n\r\n'.encode() + body[:10])
    other = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    other.request('GET', '/health')
    r = other.getresponse()
    assert (r.status, json.loads(r.read())['ready']) == (200, True)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    other.request('GET', '/ready')
    r = other.getresponse()
    assert (r.status, json.loads(r.read())) == (503, {'ready': False})
    other.request('POST', '/score', body=body, headers={'Content-Type': 'image/png'})
    r = other.getresponse()
    assert r.status == 503 and 'shutting down' in json.loads(r.read())['error']
    time.sleep(1.5)                  # past the drain: uvicorn is closing
    flight.sendall(body[10:])
    answer = flight.recv(1 << 16).decode()
    assert answer.startswith('HTTP/1.1 200'), answer[:200]
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
  finally:
    proc.kill()
    proc.wait()


def _chromium():
  import shutil
  path, driver = shutil.which('chromium'), shutil.which('chromedriver')
  if not (path and driver):
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium "
                "chromium-driver; .ci/run installs them)")
  from selenium import webdriver
  from selenium.webdriver.chrome.options import Options
  from selenium.webdriver.chrome.service import Service
  options = Options()
  options.binary_location = path
  for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage',
              '--window-size=1200,900'):
    options.add_argument(arg)
  return webdriver.Chrome(options=options, service=Service(driver))


def _shot(driver, tmp_path, name):
  """A screenshot of what the user sees (copied to docs/ when VADJAX_SCREENSHOTS is set)."""
  import shutil
  path = tmp_path / name
  driver.save_screenshot(str(path))
  figure(path)
  if os.environ.get('VADJAX_SCREENSHOTS'):
    shutil.copy(path, os.path.join(ROOT, 'docs', name))


def _api(port, path, body, kind):
  conn = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
  conn.request('POST', path, body=body, headers={'Content-Type': kind})
  r = conn.getresponse()
  assert r.status == 200
  return json.loads(r.read())


def test_page_in_a_real_browser_scores_images_and_videos(image_run, tmp_path):
  """Headless Chromium uploads an image and a video on the page, which shows the numbers
  the API returns, a heat map and a timeline; the threshold slider moves the decisions;
  the runs page lists, sorts and compares workdirs with their figures."""
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait
  workdir, run, frames = image_run
  root = tmp_path / 'runs'
  shutil_copy = __import__('shutil').copytree
  shutil_copy(workdir, root / 'a', ignore=lambda d, names: [n for n in names
                                                             if n in ('checkpoints', 'inputs')])
  from vadjax.eval import plots       # the quick run drew none: its ROC, from its scores
  scores = np.load(workdir / '1' / 'seed0' / 'test_scores.npz')['score']
  plots.roc_pr(str(root / 'a' / '1' / 'seed0' / 'roc_pr.png'), np.arange(len(scores)) % 2,
               scores)
  shutil_copy(root / 'a', root / 'b')
  report = json.loads((root / 'b' / 'report.json').read_text())
  report['mean']['auroc']['mean'] = -1.0          # sorts first, ascending
  (root / 'b' / 'report.json').write_text(json.dumps(report))
  video = tmp_path / 'walk.mp4'
  formats.write_video(str(video), list(np.repeat(_uint8(frames), 3, -1)))
  driver = _chromium()
  app = make_app([run], root=str(root))
  try:
    with running(app) as port:
      _wait_ready(port)
      wait = WebDriverWait(driver, 60)
      text = lambda id_: driver.find_element(By.ID, id_).text
      driver.get(f'http://127.0.0.1:{port}/')
      wait.until(lambda d: text('ready') == 'ready')
      image = workdir / 'inputs' / '03.png'
      driver.find_element(By.ID, 'file').send_keys(str(image))
      wait.until(lambda d: text('frame-count') == '1')
      want = _api(port, '/score', image.read_bytes(), 'image/png')['results'][0]
      assert float(text('score')) == pytest.approx(want['score'], rel=1e-5)
      assert float(text('normalized')) == pytest.approx(want['normalized'], abs=1e-4)
      threshold = run.thresholds['gmean']
      assert text('decision') == ('anomalous' if want['normalized'] > threshold else 'normal')
      assert driver.find_element(By.ID, 'frame').get_attribute('data-heatmap') == '1'
      _shot(driver, tmp_path, 'serving_image.png')

      driver.find_element(By.ID, 'file').send_keys(str(video))
      wait.until(lambda d: text('frame-count') == str(len(frames)) or 'refused' in
                 text('status'))
      assert text('frame-count') == str(len(frames)), text('status')
      answer = _api(port, '/score', video.read_bytes(), 'video/mp4')
      normalized = np.asarray([r['normalized'] for r in answer['results']])
      timeline = driver.find_element(By.ID, 'timeline')
      assert timeline.get_attribute('data-frames') == str(len(frames))
      assert int(text('anomalous-count')) == int(np.sum(normalized > threshold))
      for value in (float(normalized.min()) - 0.01, float(np.median(normalized))):
        driver.execute_script("const s = document.getElementById('threshold');"
                              "s.value = arguments[0];"
                              "s.dispatchEvent(new Event('input'));", value)
        assert int(text('anomalous-count')) == int(np.sum(normalized > float(
            driver.find_element(By.ID, 'threshold').get_attribute('value'))))
        if value < normalized.min():
          assert text('anomalous-count') == str(len(frames))
      assert int(timeline.get_attribute('data-stretches')) >= 1
      _shot(driver, tmp_path, 'serving_video.png')

      driver.get(f'http://127.0.0.1:{port}/browse')
      wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#runs tbody tr')) == 2)
      driver.find_element(By.CSS_SELECTOR, 'th[data-key="auroc"]').click()
      rows = driver.find_elements(By.CSS_SELECTOR, '#runs tbody tr')
      assert [r.get_attribute('data-id') for r in rows] == ['b', 'a']
      for name in ('a', 'b'):        # each click draws the table again
        driver.find_element(By.CSS_SELECTOR, f'#runs tbody tr[data-id="{name}"]').click()
      wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#compare .card')) == 2)
      wait.until(lambda d: all(d.execute_script('return arguments[0].naturalWidth', i) > 0
                               for i in d.find_elements(By.CSS_SELECTOR, '#compare img')))
      assert driver.find_elements(By.CSS_SELECTOR, '#compare img')
      _shot(driver, tmp_path, 'serving_runs.png')
  finally:
    driver.quit()


def test_connections_beyond_the_limit_get_503_and_nothing_is_held(tmp_path):
  """Clients that never finish their headers hold at most `max_connections`; past it the
  server answers 503 at once, and serves again when they go. (A browse-only server: no
  run to compile.)"""
  import socket
  app = make_app([], Limits(max_connections=2), root=str(tmp_path))
  with running(app) as port:
    stalled = [socket.create_connection(('127.0.0.1', port), timeout=10) for _ in range(2)]
    for s in stalled:
      s.sendall(b'GET /health HTTP/1.1\r\nHo')
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    conn.request('GET', '/health')
    assert conn.getresponse().status == 503
    conn.close()
    for s in stalled:
      s.close()
    import time
    time.sleep(0.3)
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    conn.request('GET', '/api/workdirs')
    r = conn.getresponse()
    assert (r.status, json.loads(r.read())['workdirs']) == (200, [])
