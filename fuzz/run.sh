#!/usr/bin/env bash
# Fuzzes incept's file readers with cargo-fuzz (libFuzzer). Not needed by the
# tests or CI. Usage: fuzz/run.sh [SECONDS] [TARGET...]
# Default: 600 seconds for each of the four targets, run in parallel.
#
# cargo-fuzz's address sanitizer needs a nightly toolchain. With the stable
# toolchain the targets build with --sanitizer none (coverage-guided, no
# ASan), which still catches panics, aborts, timeouts and memory over the limit.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-600}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(safetensors_googlenet idx cifar10 classify_image)
fi

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

declare -A max_len=([safetensors_googlenet]=200000 [idx]=4096 [cifar10]=16384 [classify_image]=200000)
mkdir -p logs
for target in "${targets[@]}"; do
    # The committed seeds (the sample photos for images) start the corpus;
    # libFuzzer adds what it finds to corpus/.
    mkdir -p "corpus/$target"
    if [ "$target" = classify_image ]; then
        cp -n ../data/photos/*.jpg ../data/photos/*.png "corpus/$target"/
    else
        cp -n "seeds/$target"/* "corpus/$target"/
    fi
    cargo fuzz run "$target" --sanitizer none -O -- \
        -max_total_time="$seconds" -max_len="${max_len[$target]}" -rss_limit_mb=2048 -timeout=10 \
        > "logs/$target.log" 2>&1 &
done
wait
for target in "${targets[@]}"; do
    echo "== $target"
    grep -E "^Done|^==|panicked|ERROR" "logs/$target.log" | tail -3
done
