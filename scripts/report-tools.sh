#!/usr/bin/env bash
# The programs the report's test uses to look at what `robarch report` writes: pdflatex (Debian's
# texlive, with booktabs) compiles the LaTeX tables, pdfinfo/pdftoppm (poppler) count and
# rasterise the PDF's pages, headless Chromium renders index.html, and tmux shows what `robarch
# run` draws on a terminal.
# Usage: scripts/report-tools.sh install   (idempotent; exit 3 when it cannot install: not root,
#                                            no apt-get, or apt-get failed)
set -uo pipefail
missing() {
  local m=()
  for t in pdflatex pdfinfo pdftoppm chromium tmux; do command -v "$t" >/dev/null || m+=("$t"); done
  if command -v kpsewhich >/dev/null && [ -z "$(kpsewhich booktabs.sty)" ]; then m+=(booktabs.sty); fi
  echo "${m[*]:-}"
}
case "${1:-}" in
install)
  if [ -z "$(missing)" ]; then exit 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "report-tools: cannot install here (needs root and apt-get); missing: $(missing)" >&2
    exit 3
  fi
  pkgs=(texlive-latex-base texlive-latex-recommended poppler-utils chromium tmux)
  export DEBIAN_FRONTEND=noninteractive
  echo "report-tools: installing ${pkgs[*]} with apt-get (once, a few minutes)" >&2
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null; } ||
    { echo "report-tools: apt-get could not install ${pkgs[*]}" >&2; exit 3; }
  if [ -n "$(missing)" ]; then
    echo "report-tools: still missing after apt-get: $(missing)" >&2
    exit 3
  fi
  ;;
*)
  echo "usage: $0 install" >&2
  exit 2
  ;;
esac
