# Sourced by the scripts in scripts/ after they cd to the repository root (docs/install.md).
#
# PYTHON: the interpreter to run. Default: the project's .venv (what `make install` creates)
#   when it exists, so the scripts work without `source .venv/bin/activate`; else python3.
# DATA_ROOT: the one data-root variable, the folder holding DAVIS/, YTB/<year>/, JHMDB/, VIP/
#   and VOST/ (default data; check it with python -m hvc.data.check "$DATA_ROOT").
#   JHMDB_ROOT, VIP_ROOT and VOST_ROOT still override one task's folder; DAVIS_ROOT (the DAVIS
#   folder itself, read by earlier versions of run_metrics) still works, with a warning.

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then
        PYTHON=.venv/bin/python
    elif command -v python3 >/dev/null 2>&1; then
        PYTHON=python3
    else
        PYTHON=python
    fi
fi
data=${DATA_ROOT:-data}

# dataset_root NAME: the folder of benchmark NAME (davis16 ... vost), as configs/test_NAME.yaml reads it
dataset_root() {
    case "$1" in
        davis16|davis17|davis17dev)
            if [ -n "${DAVIS_ROOT:-}" ]; then
                echo "warning: DAVIS_ROOT is deprecated: set DATA_ROOT to the folder holding DAVIS/ (here DATA_ROOT=$(dirname "$DAVIS_ROOT"))" >&2
                echo "$DAVIS_ROOT"
            else
                echo "$data/DAVIS"
            fi ;;
        ytvos) echo "$data/YTB/2018" ;;
        ytvos19) echo "$data/YTB/2019" ;;
        jhmdb) echo "${JHMDB_ROOT:-$data/JHMDB}" ;;
        vip) echo "${VIP_ROOT:-$data/VIP}" ;;
        vost) echo "${VOST_ROOT:-$data/VOST}" ;;
        *) return 1 ;;
    esac
}
