"""distil-tf-model-server's flags: parsing, exit codes, a real subprocess."""

import json
import urllib.request

import pytest
from serving_toy_models import write_toy_model

from distil_tf.serving.server import ServerProcess
from distil_tf.serving.server.main import main
from distil_tf.serving.server.options import parse_flags


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("main") / "toy"
    write_toy_model(str(path), 1)
    return path


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "model_base_path"),
        (["--model_base_path=relative/toy"], "must be an absolute path"),
        (["--model_base_path=/x", "--port=99999"], "--port"),
        (["--model_base_path=/x", "--no_such_flag=1"], "unknown flag"),
        (["--model_base_path=/x", "--batching_parameters_file=/b"], "without --enable_batching"),
        (["--model_base_path=/x", "--port=9000", "--rest_api_port=9000"], "same"),
        (["--model_base_path=/x", "--enable_batching=maybe"], "true or false"),
        (["--model_base_path=/x", "--tensorflow_intra_op_parallelism=-1"], "must be >= 0"),
        (["--model_base_path=/x", "--tensorflow_session_parallelism=2",
          "--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=2"],
         "You cannot configure all"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert fragment in error


def test_bad_config_files_exit_2(tmp_path, capsys):
    config = tmp_path / "models.config"
    config.write_text("model_config_list { config { nmae: 'x' } }")
    assert main([f"--model_config_file={config}"]) == 2
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in capsys.readouterr().err
    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 8 } allowed_batch_sizes: 4")
    assert main(["--model_base_path=/x", "--enable_batching",
                 f"--batching_parameters_file={batching}"]) == 2
    assert "must equal max_batch_size" in capsys.readouterr().err


def test_flags_map_to_options(tmp_path):
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }")
    options = parse_flags([
        "--port=0", "--rest_api_port=8601", "--model_name=m", "--model_base_path=/abs/m",
        "--enable_batching", "--monitoring_config_file", str(monitoring),
        "--file_system_poll_wait_seconds=0.5", "--rest_api_timeout_in_ms=100",
        "--grpc_max_threads=2", "--tensorflow_intra_op_parallelism=2",
        "--enable_signature_method_name_check", "false",
    ])
    assert options.model_server_config.model_config_list.config[0].name == "m"
    assert options.batching_parameters is not None
    assert options.prometheus_path == "/monitoring/prometheus/metrics"
    assert options.host == "127.0.0.1"
    assert options.rest_api_timeout_in_ms == 100
    # server.cc: a specific thread flag wins and leaves the other pool to TensorFlow (0).
    assert (options.intra_op_parallelism, options.inter_op_parallelism) == (2, 0)


@pytest.mark.parametrize(
    "flags, threads",
    [
        ([], (0, 0)),
        (["--tensorflow_session_parallelism=3"], (3, 3)),
        (["--tensorflow_session_parallelism=3", "--tensorflow_inter_op_parallelism=2"], (0, 2)),
        (["--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=2"], (1, 2)),
    ],
)
def test_thread_flags_resolve_as_tf_serving_does(flags, threads):
    options = parse_flags(["--model_base_path=/abs/m"] + flags)
    assert (options.intra_op_parallelism, options.inter_op_parallelism) == threads


def test_thread_flags_that_cannot_take_effect_refuse_to_start(model_path):
    import tensorflow as tf

    from distil_tf.serving.server import ModelServer
    from distil_tf.serving.server import ServerOptions
    from distil_tf.serving.server import StartupError
    from distil_tf.serving.server import single_model_config

    tf.constant(1.0) + 1.0  # TensorFlow's runtime (and its pools) start here at the latest.
    running = tf.config.threading.get_inter_op_parallelism_threads()
    options = ServerOptions(port=0, model_server_config=single_model_config("toy", str(model_path)),
                            file_system_poll_wait_seconds=0, inter_op_parallelism=running + 5)
    with pytest.raises(StartupError, match="--tensorflow_inter_op_parallelism=.* cannot take effect"):
        ModelServer(options).start()


def test_startup_failure_exits_1(tmp_path, capsys):
    write_toy_model(str(tmp_path / "bad"), 1, corrupt=True)
    assert main([f"--model_base_path={tmp_path / 'bad'}", "--port=0",
                 "--max_num_load_retries=0"]) == 1
    assert "Failed to start server" in capsys.readouterr().err


@pytest.mark.large
def test_subprocess_serves_and_stops_on_sigterm(model_path):
    server = ServerProcess([f"--model_name=toy", f"--model_base_path={model_path}",
                            "--file_system_poll_wait_seconds=0.5"])
    with server:
        with urllib.request.urlopen(server.rest_url + "/v1/models/toy", timeout=10) as response:
            status = json.loads(response.read())
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert server.process.returncode == 0
    assert "Running gRPC ModelServer" in server.output()


@pytest.mark.large
def test_subprocess_runs_tensorflow_with_the_thread_flags(model_path):
    server = ServerProcess([f"--model_base_path={model_path}", "--model_name=toy",
                            "--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=3"])
    with server:
        pass
    # What TensorFlow reports after the server sized its pools, before the model loaded.
    assert "TensorFlow threads: intra-op 1, inter-op 3" in server.output()


def test_port_in_use_is_a_startup_error(model_path):
    import socket

    from distil_tf.serving.server import ModelServer
    from distil_tf.serving.server import StartupError
    from distil_tf.serving.server import single_model_config
    from distil_tf.serving.server import ServerOptions

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        options = ServerOptions(port=port, model_server_config=single_model_config(
            "toy", str(model_path)), file_system_poll_wait_seconds=0)
        with pytest.raises(StartupError):
            ModelServer(options).start()
