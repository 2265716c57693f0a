"""Flags every training command shares, and the one order in which they override a config.

Precedence: the dataclass defaults < `--config` YAML < the common flags
(`--steps`, `--batch-size`, ...) < `--set key=value`.
"""


class UsageError(ValueError):
    """Bad command-line input."""


def parse_layers(text):
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise UsageError(f"--layers expects comma-separated integers, got '{text}'") from None


def add_training_flags(parser):
    """Flags every training command takes; each maps onto a config field."""
    parser.add_argument("--config", help="YAML file overriding the config's defaults")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config field, e.g. --set optimizer.learning_rate=1e-4")
    parser.add_argument("--steps", type=int, help="number of training steps (batches)")
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--max-seq-length", type=int, help="maximum sequence length in tokens")
    parser.add_argument("--seed", type=int, help="random seed (data order, masks, dropout)")
    parser.add_argument("--strategy", choices=["auto", "default", "mirrored", "multi_worker", "tpu"])
    parser.add_argument("--tpu", help="TPU address for --strategy tpu")
    parser.add_argument("--cpu-devices", type=int, help="logical CPU devices for --strategy mirrored without GPUs")
    parser.add_argument("--precision", choices=["float32", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--jit-compile", action="store_true", default=None, help="compile steps with XLA")


def resolve_training_config(cls, args, field_for_flag, extra_flag_overrides=(), **fields):
    """Defaults, then --config YAML, then explicit flags, then --set overrides (each applied once).

    Args:
        cls: the config dataclass.
        args: parsed flags (`add_training_flags`).
        field_for_flag: `{flag: config key}` for steps/batch_size/max_seq_length.
        extra_flag_overrides: more "key=value" strings from a command's own
            flags (e.g. `--data-dir`), applied with the common flags.
        fields: top-level fields from explicit flags (task, model, out...):
            they win over the YAML, like every other flag.
    """
    import dataclasses

    from distil_tf import config as config_lib

    config = dataclasses.replace(config_lib.resolve(cls, args.config, None), **fields)
    flags = {
        "steps": args.steps, "batch_size": args.batch_size, "max_seq_length": args.max_seq_length,
        "seed": args.seed, "strategy": args.strategy, "tpu": args.tpu,
        "cpu_devices": args.cpu_devices, "precision": args.precision, "jit_compile": args.jit_compile,
    }
    runtime_fields = {"seed", "strategy", "tpu", "cpu_devices", "precision", "jit_compile"}
    overrides = []
    for flag, value in flags.items():
        if value is None:
            continue
        key = f"runtime.{flag}" if flag in runtime_fields else field_for_flag[flag]
        overrides.append(f"{key}={value}")
    config = config_lib.apply_overrides(config, [*overrides, *extra_flag_overrides])
    return config_lib.apply_overrides(config, args.set)
