#!/usr/bin/env bash
# Issue 12's SST-2 acceptance run: `scripts/retention_glue.sh glue/sst2` (see there).
#   bash scripts/retention_sst2_full.sh [OUT] [extra distill-task options...]
# Cost: the teacher's two epochs over 67,349 sentences plus six student epochs; on a
# 2-core AMD EPYC plan a quiet session of a few hours.
exec bash "$(dirname "$0")/retention_glue.sh" glue/sst2 "$@"
