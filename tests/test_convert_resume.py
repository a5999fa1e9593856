"""An interrupted ``cyclegan translate`` resumes: killed (SIGKILL) at any point, stopped by SIGTERM
or Ctrl-C, the same command run again finishes the folder without redoing it and without stray files.

The kills hit a real ``cyclegan translate`` process; the reruns run in this process (the same
command line through ``cyclegan.cli.run``), which keeps the default suite quick."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from cyclegan.cli import run as cli_run
from cyclegan.inference.checkpoints import sha256_file
from cyclegan.inference.manifest import journal_path, read_journal, remove_temporaries
from conftest import write_images
from test_translate import make_checkpoint

N = 70  # inputs (3 x 20 JPEGs, 10 PNGs): enough that a kill lands mid-folder, few enough to stay quick
SIZE = (64, 48)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture
def src(tmp_path) -> Path:
    """JPEGs in nested folders, and a few PNGs."""
    root = tmp_path / "in"
    for i, sub in enumerate(["a", "b/c", "d"]):
        write_images(root / sub, 20, size=SIZE, seed=i, ext="jpg")
    write_images(root / "e", N - 3 * 20, size=SIZE, seed=9, ext="png")
    assert len(_files(root)) == N
    return root


def _args(ckpt: Path, src: Path, dst: Path, workers: int = 0) -> list[str]:
    return ["translate", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(dst), "--quiet",
            "--workers", str(workers)]


def _start(args: list[str], *, prelude: str = "") -> subprocess.Popen:
    """A real ``cyclegan translate`` process in a process group of its own (``prelude``: Python run
    before the command). Its output goes to a file, not a pipe: decoding workers orphaned by a
    SIGKILL of the main process alone would hold a pipe open."""
    code = f"{prelude}\nfrom cyclegan.cli.app import main\nmain({args!r})"
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, text=True,
                            cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    proc.log = log
    return proc


def _wait(proc: subprocess.Popen, timeout: float = 120) -> str:
    """Wait for ``proc`` to end; what it printed."""
    proc.wait(timeout=timeout)
    proc.log.seek(0)
    out = proc.log.read()
    proc.log.close()
    return out


def _files(folder: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder) for f in names}


def _outputs(dst: Path) -> set[str]:
    """Complete outputs: what is neither hidden (temporaries, the journal) nor the manifest."""
    return {f for f in _files(dst) if not Path(f).name.startswith(".") and f != "manifest.csv"}


def _kill_after(proc: subprocess.Popen, dst: Path, count: int, signum: int = signal.SIGKILL) -> str:
    """Send ``signum`` to the process group (the command and its decoding workers, as the OOM killer
    of a container, SLURM or ``kill -- -PGID`` do) once ``dst`` holds ``count`` outputs; what it printed."""
    deadline = time.time() + 120
    while len(_outputs(dst)) < count and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.killpg(proc.pid, signum)
    return _wait(proc, 60)


def _check_killed_state(dst: Path, *, in_flight: int) -> None:
    """What a crash at any instant leaves: a valid journal row for each output on disk and for
    nothing else, and at most ``in_flight`` rows (and temporaries) of files not yet in place."""
    journal = journal_path(dst / "manifest.csv")
    if not journal.exists():  # killed before converting anything
        assert _outputs(dst) == set()
        return
    rows = read_journal(journal)
    assert {os.path.relpath(p, dst.resolve()) for p in rows} == _outputs(dst)
    lines = journal.read_bytes().splitlines()
    assert len(lines) - len(rows) <= in_flight
    temporaries = [f for f in _files(dst) if ".tmp-" in f]
    assert len(temporaries) <= in_flight, temporaries


def _check_finished(src: Path, dst: Path, ckpt: Path) -> None:
    """One decodable full-size output per input, the manifest naming each (and this checkpoint), nothing else."""
    expected = _files(src)  # --format same: the same names
    assert _files(dst) == expected | {"manifest.csv"}  # no journal, no temporaries, no strays
    for f in expected:
        with Image.open(dst / f) as image:
            image.load()
            assert image.size == SIZE
    with open(dst / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(os.path.relpath(r["output"], dst) for r in rows) == sorted(expected)
    assert {r["status"] for r in rows} <= {"converted", "exists"}
    assert {r["checkpoint_sha256"] for r in rows} == {sha256_file(ckpt)}


def _rerun(args: list[str], capsys) -> tuple[int, str, str]:
    """The command run again (here, through the CLI's entry point): exit code, stdout, stderr."""
    capsys.readouterr()
    code = cli_run(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_sigkill_at_random_points_then_the_same_command_finishes(ckpt, src, tmp_path, capsys):
    dst, rng = tmp_path / "out", random.Random()
    args = _args(ckpt, src, dst)
    first, second = rng.randint(1, N // 3), rng.randint(N // 3 + 5, N // 2 + 10)
    for count in (first, second):  # the second kill hits the rerun of the first
        _kill_after(_start(args), dst, count)
        done = _outputs(dst)
        assert count <= len(done) < N, f"killed at {count}: {len(done)} outputs"
        _check_killed_state(dst, in_flight=1)  # --workers 0: one writer thread
    code, out, _ = _rerun(args, capsys)
    assert code == 0, out
    assert f"converted {N - len(done)}, skipped-existing {len(done)}, failed 0" in out  # nothing redone
    _check_finished(src, dst, ckpt)


@pytest.mark.slow
def test_sigkill_at_many_points_with_decoding_workers(ckpt, src, tmp_path):
    dst, rng = tmp_path / "out", random.Random()
    args = _args(ckpt, src, dst, workers=2)
    points = sorted(rng.sample(range(0, N - 20), 5))
    for count in points:
        _kill_after(_start(args), dst, count)
        assert len(_outputs(dst)) < N, f"killed at {points}"
        _check_killed_state(dst, in_flight=2)  # two writer threads
    proc = _start(args)
    out = _wait(proc, 300)
    assert proc.returncode == 0, out
    _check_finished(src, dst, ckpt)


def test_killed_between_the_journal_and_the_rename(ckpt, src, tmp_path, capsys):
    # The narrowest instant: the output's row is journaled, its temporary file complete, the
    # rename not done. The rerun drops that row, removes the temporary and converts it again.
    dst = tmp_path / "out"
    args = _args(ckpt, src, dst)
    prelude = textwrap.dedent("""
        import os
        import cyclegan.inference.convert as convert
        calls = []
        def publish(tmp, dst):
            calls.append(dst)
            if len(calls) == 5:
                os._exit(137)  # as SIGKILL: no handler, no finally
            return real(tmp, dst)
        real, convert.publish = convert.publish, publish
    """)
    proc = _start(args, prelude=prelude)
    out = _wait(proc)
    assert proc.returncode == 137, out
    assert len(_outputs(dst)) == 4
    assert len(journal_path(dst / "manifest.csv").read_bytes().splitlines()) == 5
    assert len([f for f in _files(dst) if ".tmp-" in f]) == 1
    _check_killed_state(dst, in_flight=1)
    code, out, _ = _rerun(args, capsys)
    assert code == 0 and f"converted {N - 4}, skipped-existing 4, failed 0" in out, out
    _check_finished(src, dst, ckpt)


def test_sigterm_finishes_the_files_in_flight_and_says_how_to_resume(ckpt, src, tmp_path, capsys):
    dst = tmp_path / "out"
    args = _args(ckpt, src, dst, workers=2)  # decoding workers and two writer threads
    proc = _start(args)
    out = _kill_after(proc, dst, random.randint(1, N // 2), signal.SIGTERM)  # to the group: workers ignore it
    assert proc.returncode == 128 + signal.SIGTERM, out  # as a shell reports a process SIGTERM ended
    lines = out.strip().splitlines()
    done = _outputs(dst)
    assert len(lines) == 1 and lines[0].startswith("error: stopped by SIGTERM: "), out
    assert lines[0].endswith("left; run the same command again to resume"), out
    assert f" {len(done)} output(s) written and recorded in {dst / 'manifest.csv'}; {N - len(done)} left" in out
    # Stopped cleanly: the manifest is written, the journal folded into it, no temporaries.
    assert _files(dst) == done | {"manifest.csv"}
    with open(dst / "manifest.csv", newline="") as f:
        assert {os.path.relpath(r["output"], dst) for r in csv.DictReader(f)} == done
    code, out, _ = _rerun(args, capsys)
    assert code == 0 and f"converted {N - len(done)}, skipped-existing {len(done)}, failed 0" in out, out
    _check_finished(src, dst, ckpt)


def test_ctrl_c_exits_130_with_the_same_line_and_a_complete_manifest(ckpt, src, tmp_path, capsys, monkeypatch):
    from cyclegan.inference import convert

    calls, translate = [], convert._Conversion._translate

    def interrupted(self, items):
        calls.append(len(items))
        if len(calls) == 7:
            raise KeyboardInterrupt
        return translate(self, items)

    monkeypatch.setattr(convert._Conversion, "_translate", interrupted)
    dst = tmp_path / "out"
    args = _args(ckpt, src, dst)
    code, _, err = _rerun(args, capsys)
    assert code == 130
    done = sum(calls[:6])  # the images of the six batches translated before the interrupt
    assert err.startswith(f"error: stopped by SIGINT: {done} output(s) written and recorded in ")
    assert err.count("\n") == 1
    assert _files(dst) == _outputs(dst) | {"manifest.csv"} and len(_outputs(dst)) == done
    monkeypatch.setattr(convert._Conversion, "_translate", translate)
    code, out, _ = _rerun(args, capsys)
    assert code == 0 and f"converted {N - done}, skipped-existing {done}, failed 0" in out
    _check_finished(src, dst, ckpt)


def test_a_journal_row_counts_only_while_its_output_is_the_file_it_wrote(ckpt, tmp_path, capsys):
    # Outputs of checkpoint A; then a run of checkpoint B with --overwrite journals img000 and is
    # killed before the rename. img000 is still A's: a rerun of A keeps it, one of B refuses it.
    src, dst = tmp_path / "in", tmp_path / "out"
    write_images(src, 3)
    other = make_checkpoint(tmp_path / "other.ckpt", seed=1)
    assert cli_run(_args(ckpt, src, dst)) == 0
    out0 = dst / "img000.png"
    tmp = dst / f".img000.png.tmp-{2**22 + 7}-abcd1234"  # no process has that id
    tmp.write_bytes(out0.read_bytes() + b"\0")
    st = tmp.stat()
    journal = journal_path(dst / "manifest.csv")
    line = ('{"input": "%s", "output": "%s", "status": "converted", "reason": "", "checkpoint_sha256": "%s", '
            '"settings": "x", "file": [%d, %d, %d]}\n' % (src / "img000.png", out0, sha256_file(other), st.st_ino,
                                                          st.st_size, st.st_mtime_ns))
    journal.write_text(line + '{"input": "torn by a power lo')  # and a last line cut short
    assert read_journal(journal) == {}
    capsys.readouterr()
    assert cli_run(_args(other, src, dst)) == 2
    assert "img000.png: written by checkpoint" in capsys.readouterr().err
    assert tmp.exists() and journal.exists()  # a refused run changes nothing
    assert cli_run(_args(ckpt, src, dst)) == 0
    assert "converted 0, skipped-existing 3, failed 0" in capsys.readouterr().out
    assert _files(dst) == {"img000.png", "img001.png", "img002.png", "manifest.csv"}
    with open(dst / "manifest.csv", newline="") as f:
        assert {r["checkpoint_sha256"] for r in csv.DictReader(f)} == {sha256_file(ckpt)}


def test_another_conversion_into_the_same_folder_is_refused(ckpt, tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    write_images(src, 2)
    dst.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, time
        fd = os.open({str(journal_path(dst / 'manifest.csv'))!r}, os.O_RDWR | os.O_CREAT)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert cli_run(_args(ckpt, src, dst)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: another conversion is writing into {dst} now") and err.count("\n") == 1
        assert _outputs(dst) == set()
    finally:
        holder.kill()
        holder.wait()
    assert cli_run(_args(ckpt, src, dst)) == 0
    assert _files(dst) == {"img000.png", "img001.png", "manifest.csv"}


def test_temporaries_of_a_running_process_are_kept_without_the_lock(tmp_path):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        names = {
            f".a.png.tmp-{alive.pid}-x1": True,  # kept: that process may still write it
            f".a.png.tmp-{dead.pid}-x2": False,
            f".a.jpg.tmp-{os.getpid()}-x3": False,  # this process has written none yet: an earlier one's
            ".a.png.tmp-k2j4_x9q": False,  # an earlier version's (no process id)
            f".b.png.tmp-{dead.pid}-x4": True,  # not beside an output of this run
            ".a.png.notes": True,
        }
        for name in names:
            (tmp_path / name).write_bytes(b"")
        assert remove_temporaries([tmp_path / "a.png"], all_stale=False) == 3
        assert {p.name for p in tmp_path.iterdir()} == {n for n, kept in names.items() if kept}
        assert remove_temporaries([tmp_path / "a.png"], all_stale=True) == 1  # holding the journal's lock
    finally:
        alive.kill()
        alive.wait()
