"""The README's CLI tour, run exactly as it stands in README.md.

The test reads the first ```sh block under "## CLI tour", replaces only the
values of the three path variables at its top (TEACHER, GLUE, CORPUS) and
the two ports, and runs the block with bash in an empty directory. A README
edit that breaks a command breaks this test.

TEACHER is a tiny 12-layer BERT with an MLM head (hidden 32) on the real
bert-base-uncased vocabulary, so the real tokenizer, the real GLUE SST-2
files and real WikiText-2 text go through every command.
"""

import os
import pathlib
import re
import socket
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def readme_tour():
    """The tour's shell script, as written in README.md."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## CLI tour"):]
    match = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert match, "README.md: no ```sh block under '## CLI tour'"
    return match.group(1)


def substitute(script, values, ports):
    """Set the tour's path variables to `values`; move ports 8500/8501 to free ones."""
    for name, value in values.items():
        script, count = re.subn(rf"^{name}=\S+", f"{name}='{value}'", script, count=1, flags=re.MULTILINE)
        assert count == 1, f"the README tour no longer sets {name}= on a line of its own"
    for old, new in ports.items():
        assert str(old) in script, f"the README tour no longer uses port {old}"
        script = script.replace(str(old), str(new))
    return script


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_real_vocab_teacher(tmp_path_factory, bert_vocab):
    """A random 12-layer `BertForMaskedLM` (hidden 32) with the bert-base-uncased vocabulary."""
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    vocabulary_size = len(bert_vocab.read_text(encoding="utf-8").splitlines())
    config = transformers.BertConfig(
        vocab_size=vocabulary_size, hidden_size=32, num_hidden_layers=12, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=512,
    )
    directory = tmp_path_factory.mktemp("tiny_bert_real_vocab")
    transformers.BertForMaskedLM(config).eval().save_pretrained(directory)
    (directory / "vocab.txt").write_text(bert_vocab.read_text(encoding="utf-8"), encoding="utf-8")
    (directory / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    return directory


def test_tour_reads_the_readme_block():
    script = readme_tour()
    for command in ("init-student", "info", "count-tokens", "distill ", "finetune", "evaluate",
                    "distill-task", "export", "serve", "predict"):
        assert f"distil-tf {command}" in script, f"the tour lost `distil-tf {command}`"
    with pytest.raises(AssertionError, match="no longer sets GLUE"):
        substitute(script.replace("GLUE=", "GLUE_DIR="), {"GLUE": "x"}, {})


def test_readme_tour_runs_as_written(tmp_path, shared_data, tiny_real_vocab_teacher):
    glue = shared_data / "glue"
    corpus = shared_data / "wikitext-2-raw" / "wiki.test.raw"
    if not (glue / "SST-2" / "train.tsv").is_file() or not corpus.is_file():
        pytest.skip(f"GLUE SST-2 or WikiText-2 missing under {shared_data}")
    grpc_port, rest_port = _free_port(), _free_port()
    script = substitute(
        readme_tour(),
        {"TEACHER": tiny_real_vocab_teacher, "GLUE": glue, "CORPUS": corpus},
        {8500: grpc_port, 8501: rest_port},
    )
    # Harness only: stop a background server if a command fails midway.
    script = "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script
    workdir = tmp_path / "tour"
    workdir.mkdir()
    env = dict(os.environ, PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=workdir, env=env,
        capture_output=True, text=True, timeout=1200,
    )
    assert result.returncode == 0, f"tour failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    out = result.stdout
    # Each stage left what the next one read.
    assert "wrote a 6-layer student to student/" in out
    assert (workdir / "counts.npy").is_file()
    assert "final model of the distill run distil-run/" in out
    assert (workdir / "sst2-teacher" / "model" / "config.json").is_file()
    assert (workdir / "sst2-student" / "student" / "config.json").is_file()
    assert "metrics written to metrics.json" in out
    assert (workdir / "exports" / "sst2" / "1" / "saved_model.pb").is_file()
    # Both predictions printed a label per sentence (gRPC: two rows, REST: one).
    assert out.count("a gripping, funny film") >= 2 and "a dull mess" in out
