import subprocess
import sys


from accumbug.cli import REPRODUCE_TRACKERS, main
from accumbug.train import history_filename


def test_reproduce_prints_the_table_and_writes_the_folder_and_figure(tmp_path, capsys):
    out = tmp_path / "repro"
    assert main(["reproduce", "--preset", "tiny", "--epochs", "2", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "seed's JSON" in printed and "strict JSON" in printed
    for name in REPRODUCE_TRACKERS:
        assert (out / history_filename(name)).exists()
        assert name in printed
    png = (out / "divergence.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"Software" not in png


def test_run_with_chosen_trackers(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--preset", "tiny", "--epochs", "1", "--out", str(out), "--no-progress",
                 "--tracker", "exact", "--tracker", "seed-fixed:bfloat16"])
    assert code == 0
    assert sorted(p.name for p in out.glob("history-*")) == ["history-exact.json", "history-seed-fixed-bfloat16.json"]


def test_python_dash_m_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "accumbug", "run", "--preset", "tiny", "--epochs", "0"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "--epochs: 0 is below the minimum of 1" in done.stderr
    assert list(tmp_path.iterdir()) == []
