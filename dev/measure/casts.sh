#!/usr/bin/env bash
# `as` type assertions in src/, bin/, dev/ (code lines only; `as const`, import/export renames and prose excluded).
cd "${1:-.}"
git ls-files 'src/*.ts' 'bin/*.ts' 'dev/*.ts' | xargs grep -nE '(\)|\]|[A-Za-z0-9_!]) as (unknown|any|[A-Z][A-Za-z0-9_.]*|\{|\(|\[|Array|Record|number|string|boolean)' \
  | grep -vE '^[^:]+:[0-9]+:\s*(\*|//|/\*)' | grep -vE 'import \* as|export \* as|\{[^}]* as [^}]*\} from' \
  | grep -vE '"[^"]* as [A-Z][^"]*"|`[^`]* as [A-Z]' | grep -vE ' as (Kaiwa|Fly|Resend|PostgreSQL|JSON)\b'
