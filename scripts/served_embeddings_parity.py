"""Served equals evaluated, for an embedding model: STS-B dev cosines from the model directory vs TF Serving's API.

    python scripts/served_embeddings_parity.py --model runs/embedding-students/layers-0-3-5/distill/student \
        --export runs/embedding-students/exports/layers-0-3-5 [--out parity.json]

Starts the local TF Serving-compatible server (`distil_tf.serving.server`'s
`ModelServer`, what `distil-tf serve` runs, here in this process) on free
ports with the exported SavedModel,
embeds every STS-B dev sentence through `ServingClient.embed_texts` over gRPC
and over REST, and compares the 1,500 pairs' cosines (and the Spearman) with
the model directory's own, in process (`distil-tf evaluate --task
stsb-embedding`'s code path). Prints one line per transport and writes JSON.
"""

import argparse
import json
import pathlib
import sys

import numpy as np

from distil_tf.export.exporter import read_embedding_config
from distil_tf.serving.client import ServingClient
from distil_tf.serving.server import ModelServer, ServerOptions, single_model_config
from distil_tf.tasks.sts_embedding import embedder_for, evaluate_sts_embeddings, read_sts_pairs, resolve_saved_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the encoder's model directory")
    parser.add_argument("--export", required=True, help="its exported base path (version directories inside)")
    parser.add_argument("--data-dir", default=None, help="the GLUE folder (default $DISTIL_TF_DATA/glue)")
    parser.add_argument("--limit", type=int, default=None, help="first N dev pairs (default all 1,500)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    pairs = read_sts_pairs(args.data_dir, "validation", args.limit)
    # The directory embeds at the export's length: the same texts in, the same cut.
    served_length = read_embedding_config(resolve_saved_model(args.export))["max_sequence_length"]
    embed, info = embedder_for(args.model, max_sequence_length=served_length)
    reference = evaluate_sts_embeddings(embed, pairs)
    report = {"model": args.model, "export": args.export, "pairs": len(pairs[2]), "embedding": info,
              "directory_spearman": reference["metrics"]["spearman"], "transports": {}}
    base_path = str(pathlib.Path(args.export).absolute())
    options = ServerOptions(port=0, rest_api_port=-1, file_system_poll_wait_seconds=0,
                            model_server_config=single_model_config("embedder", base_path))
    with ModelServer(options) as server:
        targets = {"grpc": (server.grpc_target, False), "rest": (server.rest_url.split("//")[-1].rstrip("/"), True)}
        for transport, (target, rest) in targets.items():
            with ServingClient(target, "embedder", rest=rest, timeout=60.0) as client:
                served = evaluate_sts_embeddings(client.embed_texts, pairs)
            difference = float(np.abs(served["cosines"] - reference["cosines"]).max())
            report["transports"][transport] = {"max_abs_cosine_difference": difference,
                                               "spearman": served["metrics"]["spearman"]}
            print(f"{transport}: {len(pairs[2])} pairs, max |cos served - cos directory| = {difference:.2e}, "
                  f"Spearman {100 * served['metrics']['spearman']:.2f} (directory "
                  f"{100 * reference['metrics']['spearman']:.2f})")
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
