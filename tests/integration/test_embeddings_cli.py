"""`harness convert` and `harness embed compare` end to end (own server, report in a temp dir)."""

import pytest

from harness.cli import main

pytestmark = pytest.mark.integration


def test_convert_cli_uses_the_cache(embed_conversions, capsys):
    assert main(["convert", "--formats", "onnx,int8"]) == 0
    out = capsys.readouterr().out
    assert out.count("cached") == 2


def test_embed_compare_cli_writes_report(embed_conversions, tmp_path, capsys):
    rc = main(["embed", "compare", "--formats", "onnx,int8", f"embed.reports_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "onnx" in out and "int8" in out and "FAIL" not in out
    text = (tmp_path / "embeddings.md").read_text()
    assert "| int8 |" in text and (tmp_path / "embeddings_heatmap.png").is_file()


def test_embed_compare_fails_when_a_threshold_is_missed(embed_conversions, tmp_path, capsys):
    # an impossible int8 floor: the command must say FAIL and exit non-zero
    rc = main(
        [
            "embed",
            "compare",
            "--formats",
            "int8",
            f"embed.reports_dir={tmp_path}",
            "embed.thresholds.int8_mean_cosine=0.99999",
        ]
    )
    assert rc == 1
    assert "FAIL" in capsys.readouterr().out
