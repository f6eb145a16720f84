#!/usr/bin/env bash
# The codebase's health figures (docs/architecture.md): functions over 60 lines, `as` casts, `any`, rows cast with
# `sql<Row>` instead of decoded, README lines. Usage: bash dev/measure/code.sh [repository folder]
here="$(cd "$(dirname "$0")" && pwd)"
cd "${1:-.}"
echo "functions over 60 lines: $(node "$here/fnlen.mjs" $(git ls-files 'src/*.ts' 'bin/*.ts' 'dev/*.ts') | tail -1)"
echo "as casts: $(bash "$here/casts.sh" | wc -l)"
echo "any: $(git ls-files 'src/*.ts' 'bin/*.ts' 'dev/*.ts' | xargs grep -nE ':\s*any\b|<any>|as any' | grep -vE ':[0-9]+:\s*(\*|//)' | wc -l)"
echo "sql<Row> casts: $(git ls-files 'src/*.ts' | xargs grep -n 'sql<' | wc -l)"
echo "README lines: $(wc -l < README.md)"
