"""tensorflow_model_server's flags and config files, parsed and validated.

Configs are read with TF Serving's own protos and `text_format`, so a file
that works here works with the real binary and the other way round.
"""

import argparse
import dataclasses
import logging
import os

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from distil_tf.serving.server.protos import BatchingParameters
from distil_tf.serving.server.protos import MonitoringConfig

logger = logging.getLogger(__name__)

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
# TF Serving's gRPC limit is INT32_MAX; a stand-in that holds whole requests
# in Python memory needs a saner ceiling. 64 MiB fits a batch of 1,000 full
# 512-token id rows many times over.
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024

# Flags of the real binary (model_servers/main.cc) that change nothing here:
# accepted so that a docker command line runs unchanged, ignored with a warning.
IGNORED_FLAGS = (
    "grpc_channel_arguments",
    "grpc_max_threads",
    "rest_api_num_threads",
    "rest_api_enable_cors_support",
    "ssl_config_file",
    "platform_config_file",
    "enable_per_model_batching_parameters",
    "allow_version_labels_for_unavailable_models_deprecated",
    "num_load_threads",
    "num_unload_threads",
    "saved_model_tags",
    "per_process_gpu_memory_fraction",
    "flush_filesystem_caches",
    "enable_signature_method_name_check",
    "xla_cpu_compilation_enabled",
    # The TF profiler's gRPC service lives in TF's C++ runtime; Python cannot
    # register it on this server (see serving/README.md).
    "enable_profiler",
    "enable_grpc_healthcheck_service",
    "enable_serialization_as_tensor_content",
    "use_tflite_model",
    "use_alts_credentials",
    "response_tensor_content",
    "model_config_file_poll_wait_seconds_deprecated",
    "tensorflow_session_config_file",
    "remove_unused_fields_from_bundle_metagraph",
    "prefer_tflite_model",
    "num_tflite_pools",
    "num_tflite_interpreters_per_pool",
    "enable_model_warmup_deprecated",
    "thread_pool_factory_config_file",
    "mixed_precision",
    "skip_initialize_tpu",
)


class ConfigError(ValueError):
    """A bad flag or config file; `main` prints it on one line and exits 2."""


@dataclasses.dataclass
class ServerOptions:
    """Everything the server needs, resolved from flags or set by a test.

    Args:
        port: int. gRPC port; 0 picks a free one.
        rest_api_port: int. REST port; 0 disables REST, -1 picks a free one.
        host: str. Address both front ends bind to (loopback by default).
        model_server_config: `ModelServerConfig` with a `model_config_list`.
        model_config_file: str or None. Re-read every
            `model_config_file_poll_wait_seconds` (> 0) seconds.
        file_system_poll_wait_seconds: float. Version directory poll period;
            0 polls once at start.
        batching_parameters: `BatchingParameters` or None (batching off).
        monitoring_config: `MonitoringConfig` or None.
        rest_api_timeout_in_ms: int. Per REST request deadline.
        enable_model_warmup: bool. Replay `assets.extra/tf_serving_warmup_requests`.
        max_request_bytes: int. Largest gRPC message or REST body accepted.
        max_num_load_retries: int. Extra attempts for a version that fails.
        load_retry_interval_micros: int. Wait between attempts.
        allow_version_labels_for_unavailable_models: bool.
        grpc_max_threads: int. gRPC worker threads.
        grpc_socket_path: str or None. Also serve gRPC on this Unix socket.
        intra_op_parallelism: int. Threads one TensorFlow op may use; 0 lets
            TensorFlow pick (the cores).
        inter_op_parallelism: int. TensorFlow ops (of one request or of
            concurrent ones) that run at once; 0 lets TensorFlow pick.
    """

    port: int = 8500
    rest_api_port: int = 0
    host: str = "127.0.0.1"
    model_server_config: model_server_config_pb2.ModelServerConfig = None
    model_config_file: str = None
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    batching_parameters: object = None
    monitoring_config: object = None
    rest_api_timeout_in_ms: int = 30000
    enable_model_warmup: bool = True
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60 * 1000 * 1000
    allow_version_labels_for_unavailable_models: bool = False
    grpc_max_threads: int = 16
    grpc_socket_path: str = None
    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0

    @property
    def prometheus_path(self):
        """The metrics URL path, or None when Prometheus export is off."""
        if self.monitoring_config is None:
            return None
        prometheus = self.monitoring_config.prometheus_config
        if not prometheus.enable:
            return None
        return prometheus.path or DEFAULT_PROMETHEUS_PATH


def _read_text_proto(path, message, what):
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ConfigError(f"cannot read {what} file {path}: {error.strerror}")
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ConfigError(
            f"Error parsing text-format {message.DESCRIPTOR.full_name}: {error}"
        )


def read_model_server_config(path):
    """Parses and validates a `models.config` file (ModelServerConfig)."""
    config = _read_text_proto(
        path, model_server_config_pb2.ModelServerConfig(), "--model_config_file"
    )
    validate_model_server_config(config)
    return config


def validate_model_server_config(config):
    """Checks what ServerCore checks before loading; raises ConfigError."""
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(
            "ModelServerConfig must hold a model_config_list "
            "(custom_model_config is not supported)"
        )
    seen = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise ConfigError("every model config needs a non-empty name")
        if model.name in seen:
            raise ConfigError(
                f"Illegal to list model {model.name} multiple times in config list"
            )
        seen.add(model.name)
        # server_core.cc GetPlatform: the deprecated model_type may stand in
        # for model_platform, but setting both is refused.
        if model.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
            if model.model_platform:
                raise ConfigError(
                    "Illegal setting both ModelServerConfig::model_type (deprecated) "
                    "and ModelServerConfig::model_platform, model name is "
                    f"{model.name}"
                )
            if model.model_type != model_server_config_pb2.TENSORFLOW:
                raise ConfigError(
                    f"ModelServerConfig::model_type choice {model.model_type} not supported."
                )
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(
                f"Model {model.name} requested unsupported platform "
                f"{model.model_platform!r}; only 'tensorflow' is served"
            )
        # server_core_test RelativePathFails: TF Serving refuses relative base
        # paths (the exact message was not in the contract; this one names it).
        if not os.path.isabs(model.base_path):
            raise ConfigError(
                f"Model {model.name} base_path must be an absolute path, "
                f"got {model.base_path!r} (TF Serving's rule too: pass "
                f"{os.path.abspath(model.base_path)!r}, e.g. --model_base_path=$PWD/...)"
            )
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "latest" and (
            policy.latest.num_versions < 0
        ):
            raise ConfigError(f"Model {model.name}: num_versions must be >= 0")
    return config


def single_model_config(model_name, model_base_path):
    """The ModelServerConfig that --model_name/--model_base_path stand for."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = model_base_path
    model.model_platform = "tensorflow"
    return validate_model_server_config(config)


def read_batching_parameters(path):
    """Parses and validates a BatchingParameters text file."""
    parameters = _read_text_proto(
        path, BatchingParameters(), "--batching_parameters_file"
    )
    validate_batching_parameters(parameters)
    return parameters


def validate_batching_parameters(parameters):
    """bundle_factory_util.cc's checks on BatchingParameters."""
    max_batch_size = batching_value(parameters, "max_batch_size")
    if max_batch_size <= 0:
        raise ConfigError("max_batch_size must be positive")
    if batching_value(parameters, "num_batch_threads") <= 0:
        raise ConfigError("num_batch_threads must be positive")
    if batching_value(parameters, "max_enqueued_batches") <= 0:
        raise ConfigError("max_enqueued_batches must be positive")
    sizes = list(parameters.allowed_batch_sizes)
    if sizes:
        if any(later <= earlier for earlier, later in zip(sizes, sizes[1:])):
            raise ConfigError("allowed_batch_sizes entries must be monotonically increasing")
        if sizes[-1] != max_batch_size:
            raise ConfigError(
                "Last entry in allowed_batch_sizes must equal max_batch_size; "
                f"last entry was {sizes[-1]}; expected {max_batch_size}"
            )
    return parameters


# Defaults of BasicBatchScheduler::Options, used when a field is unset.
_BATCHING_DEFAULTS = {
    "max_batch_size": 1000,
    "batch_timeout_micros": 0,
    "max_enqueued_batches": 10,
    "num_batch_threads": os.cpu_count() or 1,
    "max_execution_batch_size": 1000,
}


def batching_value(parameters, name):
    """A wrapped BatchingParameters field, or the scheduler's default."""
    if parameters.HasField(name):
        return int(getattr(parameters, name).value)
    return _BATCHING_DEFAULTS[name]


def read_monitoring_config(path):
    return _read_text_proto(path, MonitoringConfig(), "--monitoring_config_file")


def session_parallelism(session, intra_op, inter_op):
    """`(intra-op, inter-op)` threads from the three thread flags, as server.cc resolves them.

    Either of the two specific flags wins (the other left at 0: TensorFlow
    picks); otherwise `--tensorflow_session_parallelism` sets both. All three
    at once is refused, with TF Serving's message.
    """
    for name, value in (("tensorflow_session_parallelism", session),
                        ("tensorflow_intra_op_parallelism", intra_op),
                        ("tensorflow_inter_op_parallelism", inter_op)):
        if value < 0:
            # The real binary hands a negative count to TensorFlow's session,
            # which then runs every op in the caller's thread; this server's
            # functions have no such mode, so it refuses rather than differ.
            raise ConfigError(f"--{name} must be >= 0 here (0: TensorFlow picks), got {value}; "
                              "a negative count (ops in the caller's thread) is not supported by this server")
    if session > 0 and intra_op > 0 and inter_op > 0:
        raise ConfigError(
            "Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, "
            "server_options.tensorflow_inter_op_parallelism) separately. "
            "You cannot configure all."
        )
    if intra_op > 0 or inter_op > 0:
        return intra_op, inter_op
    return session, session


def _bool_flag(text):
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "t", "yes", "y"):
        return True
    if lowered in ("0", "false", "f", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ConfigError(message)


def build_flag_parser():
    parser = _Parser(
        prog="distil-tf-model-server",
        description=(
            "A TensorFlow-Serving-compatible model server for SavedModels "
            "(flags follow tensorflow_model_server)."
        ),
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("--port", type=int, default=8500, help="gRPC port (0 picks a free one)")
    add("--rest_api_port", type=int, default=0, help="REST port; 0 disables REST")
    add("--host", "--rest_api_host", "--bind", dest="host", default="127.0.0.1",
        help="address to bind (default loopback; 0.0.0.0 for all interfaces)")
    add("--model_name", default="default")
    add("--model_base_path", default="")
    add("--model_config_file", default="")
    add("--model_config_file_poll_wait_seconds", type=float, default=0.0)
    add("--file_system_poll_wait_seconds", type=float, default=1.0)
    add("--enable_batching", type=_bool_flag, nargs="?", const=True, default=False)
    add("--batching_parameters_file", default="")
    add("--monitoring_config_file", default="")
    add("--rest_api_timeout_in_ms", type=int, default=30000)
    add("--enable_model_warmup", type=_bool_flag, nargs="?", const=True, default=True)
    add("--max_request_bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
        help="largest gRPC message / REST body accepted (not a TF Serving flag)")
    add("--max_num_load_retries", type=int, default=5)
    add("--load_retry_interval_micros", type=int, default=60 * 1000 * 1000)
    add("--allow_version_labels_for_unavailable_models", type=_bool_flag,
        nargs="?", const=True, default=False)
    add("--grpc_max_threads", type=int, default=16)
    add("--grpc_socket_path", default="",
        help="also serve gRPC on this Unix domain socket (unix:PATH)")
    add("--tensorflow_session_parallelism", type=int, default=0,
        help="threads of both TensorFlow pools (0: TensorFlow picks)")
    add("--tensorflow_intra_op_parallelism", type=int, default=0,
        help="threads one op may use (0: TensorFlow picks, the cores)")
    add("--tensorflow_inter_op_parallelism", type=int, default=0,
        help="ops that run at once, of one request or of concurrent ones "
             "(0: TensorFlow picks); 1 serializes concurrent requests")
    return parser


def parse_flags(argv):
    """Flags -> ServerOptions. Raises ConfigError on anything invalid."""
    parser = build_flag_parser()
    known, unknown = parser.parse_known_args(argv)
    index = 0
    while index < len(unknown):
        token = unknown[index]
        name = token.lstrip("-").split("=", 1)[0]
        if not (token.startswith("--") and name in IGNORED_FLAGS):
            raise ConfigError(f"unknown flag: {token}")
        logger.warning("flag --%s is accepted for compatibility and ignored", name)
        index += 1
        # "--flag value" form: the value belongs to the ignored flag.
        if "=" not in token and index < len(unknown) and not unknown[index].startswith("-"):
            index += 1
    if known.port < 0 or known.port > 65535:
        raise ConfigError(f"--port must be in 0..65535, got {known.port}")
    if known.rest_api_port < -1 or known.rest_api_port > 65535:
        raise ConfigError(f"--rest_api_port must be in 0..65535, got {known.rest_api_port}")
    if known.rest_api_port and known.rest_api_port == known.port:
        raise ConfigError("--rest_api_port cannot be the same as the gRPC --port")
    if known.max_request_bytes <= 0:
        raise ConfigError("--max_request_bytes must be positive")
    if known.model_config_file:
        config = read_model_server_config(known.model_config_file)
    elif known.model_base_path:
        config = single_model_config(known.model_name, known.model_base_path)
    else:
        raise ConfigError(
            "Both server_model_config and model_base_path are empty: pass "
            "--model_base_path=/abs/path or --model_config_file=models.config"
        )
    batching = None
    if known.batching_parameters_file and not known.enable_batching:
        raise ConfigError(
            "--batching_parameters_file is set without --enable_batching"
        )
    if known.enable_batching:
        if known.batching_parameters_file:
            batching = read_batching_parameters(known.batching_parameters_file)
        else:
            batching = BatchingParameters()
            batching.num_batch_threads.value = os.cpu_count() or 1
    intra_op, inter_op = session_parallelism(
        known.tensorflow_session_parallelism,
        known.tensorflow_intra_op_parallelism,
        known.tensorflow_inter_op_parallelism,
    )
    monitoring = None
    if known.monitoring_config_file:
        monitoring = read_monitoring_config(known.monitoring_config_file)
    return ServerOptions(
        port=known.port,
        rest_api_port=known.rest_api_port,
        host=known.host,
        model_server_config=config,
        model_config_file=known.model_config_file or None,
        model_config_file_poll_wait_seconds=known.model_config_file_poll_wait_seconds,
        file_system_poll_wait_seconds=known.file_system_poll_wait_seconds,
        batching_parameters=batching,
        monitoring_config=monitoring,
        rest_api_timeout_in_ms=known.rest_api_timeout_in_ms,
        enable_model_warmup=known.enable_model_warmup,
        max_request_bytes=known.max_request_bytes,
        max_num_load_retries=known.max_num_load_retries,
        load_retry_interval_micros=known.load_retry_interval_micros,
        allow_version_labels_for_unavailable_models=(
            known.allow_version_labels_for_unavailable_models
        ),
        grpc_max_threads=known.grpc_max_threads,
        grpc_socket_path=known.grpc_socket_path or None,
        intra_op_parallelism=intra_op,
        inter_op_parallelism=inter_op,
    )
