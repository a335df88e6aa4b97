#!/usr/bin/env bash
# The generated Digits trainer at two ranks against its ceiling on this machine, and PyTorch's DDP beside it.
#
#   bash tests/ModelDsl.Benchmarks/trainer_scaling.sh [rounds] [epochs]      (defaults 5 and 12; ~40 s a round)
#
# Each round runs, one after the other, with 1 libtorch thread per process and no optimisation passes:
#   one   - the trainer alone (world size 1)
#   two   - the trainer at --world-size 2 (two ranks under mpirun, sync DDP; the launcher binds each rank to its CPUs)
#   unbnd - the same with the ranks unbound (OMPI_MCA_hwloc_base_binding_policy=none), the launcher's default before
#   indep - two independent single-process trainings at once (different seeds): no communication at all, so
#           indep / (2 x one) is the most any two-process run can reach on this machine (its ceiling)
#   cpu0, cpu1 - the same pair, each pinned to one CPU (taskset), as the bound ranks are: a synchronous step runs at
#           the slower CPU's pace, so 2 x min(cpu0, cpu1) is what synchronous training can reach on these two CPUs
#           (on a VM whose vCPUs differ in speed, below the ceiling)
# Each figure is the median over epochs 3.. of the report's per-epoch samples/s (the epoch loop, validation excluded).
# Printed per round: two / (2 x one) (scaling efficiency), indep / (2 x one) (the ceiling), and two / indep (the
# trainer's share of the ceiling, the figure issue 21 asks >= 0.95 of); then the medians over rounds; then
# ddp_peer.py (PyTorch 1.13 DDP over gloo on the same CNN) if /usr/bin/python3 has torch.
set -euo pipefail
ROUNDS=${1:-5}
EPOCHS=${2:-12}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
dotnet build -c Release "$ROOT/samples/Digits" >/dev/null
DLL="$ROOT/samples/Digits/bin/Release/net10.0/Digits.dll"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT/samples/Digits" # the sample's data paths are relative to it

train() { # name, extra arguments...
  local name=$1; shift
  ${PIN:-} dotnet "$DLL" --epochs "$EPOCHS" --threads 1 --no-optimize --plain --checkpoint-dir "$WORK/$name" --report "$WORK/$name.json" "$@" >/dev/null 2>&1
}
rate() { # report files... -> summed median samples/s
  /usr/bin/python3 - "$@" <<'PY'
import json, statistics, sys
print(round(sum(statistics.median(e["samples"] / e["seconds"] for e in json.load(open(f))["history"][2:]) for f in sys.argv[1:])))
PY
}
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; flags: $(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx_vnni|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
printf '%-6s %7s %7s %7s %7s %7s %7s %10s %8s %10s %11s %10s %6s\n' round one two unbnd indep cpu0 cpu1 efficiency ceiling two/indep unbnd/indep two/sync load
results=()
for r in $(seq 1 "$ROUNDS"); do
  rm -rf "$WORK"/*
  load=$(cut -d' ' -f1 /proc/loadavg)
  train one; one=$(rate "$WORK/one.json")
  train two --world-size 2; two=$(rate "$WORK/two.json")
  OMPI_MCA_hwloc_base_binding_policy=none train unbound --world-size 2; unbound=$(rate "$WORK/unbound.json")
  train a & train b --seed 1; wait; indep=$(rate "$WORK/a.json" "$WORK/b.json")
  PIN="taskset -c 0" train p0 & PIN="taskset -c 1" train p1 --seed 1; wait
  cpu0=$(rate "$WORK/p0.json"); cpu1=$(rate "$WORK/p1.json")
  line=$(/usr/bin/python3 -c "print(f'{$two/(2*$one):.3f} {$indep/(2*$one):.3f} {$two/$indep:.3f} {$unbound/$indep:.3f} {$two/(2*min($cpu0,$cpu1)):.3f}')")
  results+=("$line")
  read -r eff ceil share ushare sshare <<<"$line"
  printf '%-6s %7s %7s %7s %7s %7s %7s %10s %8s %10s %11s %10s %6s\n' "$r" "$one" "$two" "$unbound" "$indep" "$cpu0" "$cpu1" "$eff" "$ceil" "$share" "$ushare" "$sshare" "$load"
done
printf '%s\n' "${results[@]}" | /usr/bin/python3 -c "
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
print(f'median over {len(rows)} rounds: efficiency {med[0]:.3f}, ceiling {med[1]:.3f}, trainer / ceiling {med[2]:.3f} (unbound ranks: {med[3]:.3f}), trainer / synchronous bound {med[4]:.3f}')"
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  /usr/bin/python3 "$ROOT/tests/ModelDsl.Benchmarks/ddp_peer.py" | tail -5
fi
