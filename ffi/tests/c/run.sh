#!/usr/bin/env bash
# Builds libtessera.a, checks that include/tessera.h compiles as C99 and
# C++17 with every warning an error, then builds test_verify.c against the
# library and runs it three times: plain, under valgrind memcheck (no errors,
# no leaks), and built with AddressSanitizer and UBSan.
#
#   ffi/tests/c/run.sh            # all three
#   SKIP_VALGRIND=1 ffi/tests/c/run.sh
#
# CC (default gcc) and CXX (default g++) choose the compilers.
set -euo pipefail
cd "$(dirname "$0")/../../.."

CC="${CC:-gcc}"
CXX="${CXX:-g++}"
OUT=target/c-tests
LIB=target/debug/libtessera.a
# What the Rust standard library needs from the system
# (`cargo rustc -p tessera-ffi --lib --crate-type staticlib -- --print native-static-libs`).
LIBS=(-lpthread -ldl -lm)
WARN=(-Wall -Wextra -Werror -pedantic)

cargo build -p tessera-ffi
mkdir -p "$OUT"

echo "== include/tessera.h as C99 and C++17"
printf '#include "tessera.h"\nint main(void) { return tessera_version() != TESSERA_VERSION_NUMBER; }\n' >"$OUT/header.c"
cp "$OUT/header.c" "$OUT/header.cpp"
"$CC" -std=c99 "${WARN[@]}" -Iinclude -c "$OUT/header.c" -o "$OUT/header.o"
"$CXX" -std=c++17 "${WARN[@]}" -Iinclude -c "$OUT/header.cpp" -o "$OUT/header_cpp.o"
echo "ok"

echo "== the shared vectors through the C API"
python3 ffi/tests/c/gen_vectors.py core/tests/vectors "$OUT/vectors.h"
"$CC" -std=c99 "${WARN[@]}" -g -Iinclude -I"$OUT" ffi/tests/c/test_verify.c "$LIB" "${LIBS[@]}" \
    -o "$OUT/test_verify"
"$OUT/test_verify"

if [ -z "${SKIP_VALGRIND:-}" ]; then
    echo "== under valgrind"
    valgrind --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect,possible \
        --errors-for-leak-kinds=definite,indirect,possible "$OUT/test_verify"
fi

echo "== with AddressSanitizer and UBSan"
"$CC" -std=c99 "${WARN[@]}" -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
    -fno-sanitize-recover=all -Iinclude -I"$OUT" ffi/tests/c/test_verify.c "$LIB" "${LIBS[@]}" \
    -o "$OUT/test_verify_asan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$OUT/test_verify_asan"
