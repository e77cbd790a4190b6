#!/usr/bin/env bash
# Builds (once) and caches the real servers that Pulse's tests and demo run on.
# kube-scheduler is built too: kwok simulates kubelets, but something must bind pods to
# its nodes for a Deployment to become Available.
#
# Everything is cached by version under $PULSE_CACHE (default ~/.cache/pulse):
#   $PULSE_CACHE/tools/<name>-<version>/<name>   the built binary
#   $PULSE_CACHE/bin/<name>                       symlink to the version in use
# A second run with everything cached only checks files and takes well under 5 s.
# Go builds run in wrapper modules generated under $PULSE_CACHE/src, never in this repo.
set -euo pipefail

CACHE="${PULSE_CACHE:-$HOME/.cache/pulse}"
BIN="$CACHE/bin"
TOOLS="$CACHE/tools"
SRC="$CACHE/src"
mkdir -p "$BIN" "$TOOLS" "$SRC"

K8S_VERSION="v1.37.2"
K8S_STAGING_VERSION="v0.37.2"
ETCD_VERSION="v3.6.16"
FERRETDB_VERSION="v1.24.2"
HELM_VERSION="v3.22.0"
KWOK_VERSION="v0.8.0"
# Prometheus publishes its Go module as v0.<minor>.<patch> for release 3.<minor>.<patch>.
PROMETHEUS_VERSION="v0.316.0"
KUBE_STATE_METRICS_VERSION="v2.20.0"

export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"

started=$SECONDS
log() { printf '[stack %4ds] %s\n' "$((SECONDS - started))" "$*"; }

# go_build_progress DIR OUT PKG LDFLAGS: builds PKG in module DIR, printing a line every
# 50 compiled packages so a cold build of Kubernetes shows it is alive.
go_build_progress() {
  local dir="$1" out="$2" pkg="$3" ldflags="$4"
  local tmp="$out.tmp.$$"
  (
    cd "$dir"
    go build -v -trimpath -ldflags "-s -w $ldflags" -o "$tmp" "$pkg" 2>&1 |
      awk -v name="$(basename "$out")" '
        /^(go: downloading|go: finding)/ { dl++; if (dl % 50 == 0) { printf "  %s: %d modules downloaded\n", name, dl; fflush() }; next }
        /^[a-zA-Z0-9_.\/-]+$/ { n++; if (n % 50 == 0) { printf "  %s: %d packages compiled\n", name, n; fflush() }; next }
        { print "  " $0; fflush() }
        END { printf "  %s: %d packages compiled\n", name, n }'
    exit "${PIPESTATUS[0]}"
  ) || { rm -f "$tmp"; return 1; }
  mv "$tmp" "$out"
}

# wrapper_module NAME VERSION GOMOD_BODY: writes a go.mod for building a tool at VERSION.
wrapper_module() {
  local dir="$SRC/$1-$2"
  mkdir -p "$dir"
  printf 'module pulse.local/stack/%s\n\ngo 1.26\n\n%s\n' "$1" "$3" >"$dir/go.mod"
  [[ -f "$dir/go.sum" ]] || : >"$dir/go.sum"
  printf 'package stack\n' >"$dir/doc.go"
  echo "$dir"
}

# link NAME VERSION: points bin/NAME at the cached build of VERSION.
link() { ln -sfn "$TOOLS/$1-$2/$1" "$BIN/$1"; }

cached() { [[ -x "$TOOLS/$1-$2/$1" ]]; }

build_kubernetes() {
  local names=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  local missing=()
  for n in "${names[@]}"; do cached "$n" "$K8S_VERSION" || missing+=("$n"); done
  if ((${#missing[@]})); then
    log "kubernetes $K8S_VERSION: building ${missing[*]} (cold: about 7 min on 2 cores)"
    # The staging modules (k8s.io/api, client-go, ...) are required at v0.0.0 by
    # k8s.io/kubernetes and replaced by paths in its own repo; read that list from its
    # go.mod and pin each to the published $K8S_STAGING_VERSION.
    local gomod
    gomod=$(cd /tmp && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    local staging
    staging=$(awk '/^require \(/{r=1;next} r&&/^\)/{r=0} r&&$1 ~ /^k8s\.io\// && $2=="v0.0.0"{print $1}' "$gomod")
    [[ -n "$staging" ]] || { echo "no staging modules found in $gomod" >&2; exit 1; }
    local body="require k8s.io/kubernetes $K8S_VERSION"$'\n'
    for m in $staging; do body+="replace $m => $m $K8S_STAGING_VERSION"$'\n'; done
    local dir
    dir=$(wrapper_module kubernetes "$K8S_VERSION" "$body")
    local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    local ld=""
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
      ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    for n in "${missing[@]}"; do
      local pkg="k8s.io/kubernetes/cmd/$n"
      mkdir -p "$TOOLS/$n-$K8S_VERSION"
      log "  building $n"
      go_build_progress "$dir" "$TOOLS/$n-$K8S_VERSION/$n" "$pkg" "$ld"
    done
  fi
  for n in "${names[@]}"; do link "$n" "$K8S_VERSION"; done
}

build_etcd() {
  if ! cached etcd "$ETCD_VERSION"; then
    log "etcd $ETCD_VERSION: building (cold: about 1 min)"
    local dir
    dir=$(wrapper_module etcd "$ETCD_VERSION" "require go.etcd.io/etcd/server/v3 $ETCD_VERSION")
    mkdir -p "$TOOLS/etcd-$ETCD_VERSION"
    go_build_progress "$dir" "$TOOLS/etcd-$ETCD_VERSION/etcd" go.etcd.io/etcd/server/v3 \
      "-X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}"
  fi
  link etcd "$ETCD_VERSION"
}

build_ferretdb() {
  if ! cached ferretdb "$FERRETDB_VERSION"; then
    log "ferretdb $FERRETDB_VERSION: building (cold: about 1 min)"
    # FerretDB refuses to start unless build/version/version.txt (embedded at build time)
    # names its version; release builds generate it from git. Build from a writable copy of
    # the module with that file written.
    local dir
    dir=$(wrapper_module ferretdb "$FERRETDB_VERSION" "require github.com/FerretDB/FerretDB $FERRETDB_VERSION
replace github.com/FerretDB/FerretDB => ./FerretDB")
    local module
    module=$(cd /tmp && go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    rm -rf "$dir/FerretDB"
    cp -r "$module" "$dir/FerretDB"
    chmod -R u+w "$dir/FerretDB"
    echo "$FERRETDB_VERSION" >"$dir/FerretDB/build/version/version.txt"
    echo "pulse-local-stack" >"$dir/FerretDB/build/version/package.txt"
    mkdir -p "$TOOLS/ferretdb-$FERRETDB_VERSION"
    go_build_progress "$dir" "$TOOLS/ferretdb-$FERRETDB_VERSION/ferretdb" \
      github.com/FerretDB/FerretDB/cmd/ferretdb ""
  fi
  link ferretdb "$FERRETDB_VERSION"
}

build_helm() {
  if ! cached helm "$HELM_VERSION"; then
    log "helm $HELM_VERSION: building (cold: about 1-2 min)"
    local dir
    dir=$(wrapper_module helm "$HELM_VERSION" "require helm.sh/helm/v3 $HELM_VERSION")
    mkdir -p "$TOOLS/helm-$HELM_VERSION"
    local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    go_build_progress "$dir" "$TOOLS/helm-$HELM_VERSION/helm" helm.sh/helm/v3/cmd/helm \
      "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  fi
  link helm "$HELM_VERSION"
}

build_kwok() {
  if ! cached kwok "$KWOK_VERSION"; then
    log "kwok $KWOK_VERSION: building (cold: about 1-2 min)"
    local dir
    dir=$(wrapper_module kwok "$KWOK_VERSION" "require sigs.k8s.io/kwok $KWOK_VERSION")
    mkdir -p "$TOOLS/kwok-$KWOK_VERSION"
    go_build_progress "$dir" "$TOOLS/kwok-$KWOK_VERSION/kwok" sigs.k8s.io/kwok/cmd/kwok \
      "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
  fi
  link kwok "$KWOK_VERSION"
}

# Prometheus and promtool, to prove the dashboards' queries and the alert rules. Built with
# remove_all_sd: only static, file and HTTP discovery, none of the cloud SDKs (the tests write
# static scrape configs); without the builtinassets tag the web UI is not embedded either,
# so the server answers its HTTP API and /metrics but serves no UI pages.
build_prometheus() {
  local names=(prometheus promtool)
  local missing=()
  for n in "${names[@]}"; do cached "$n" "$PROMETHEUS_VERSION" || missing+=("$n"); done
  if ((${#missing[@]})); then
    log "prometheus $PROMETHEUS_VERSION: building ${missing[*]} (cold: about 5 min on 2 cores)"
    local dir
    dir=$(wrapper_module prometheus "$PROMETHEUS_VERSION" "require github.com/prometheus/prometheus $PROMETHEUS_VERSION")
    # v0.316.0 is release 3.16.0
    local mm="${PROMETHEUS_VERSION#v0.}"
    local release="3.$((10#${mm%%.*} - 300)).${mm#*.}"
    local ld="-X github.com/prometheus/common/version.Version=$release"
    ld+=" -X github.com/prometheus/common/version.Revision=$PROMETHEUS_VERSION"
    ld+=" -X github.com/prometheus/common/version.Branch=module"
    ld+=" -X github.com/prometheus/common/version.BuildUser=pulse-local-stack"
    for n in "${missing[@]}"; do
      mkdir -p "$TOOLS/$n-$PROMETHEUS_VERSION"
      log "  building $n"
      GOFLAGS="$GOFLAGS -tags=remove_all_sd" go_build_progress "$dir" \
        "$TOOLS/$n-$PROMETHEUS_VERSION/$n" "github.com/prometheus/prometheus/cmd/$n" "$ld"
    done
  fi
  for n in "${names[@]}"; do link "$n" "$PROMETHEUS_VERSION"; done
}

# kube-state-metrics: the Deployment and Pod series (replicas, container restarts) that the
# dashboards' Replicas panel and the crash-loop alert read, from the local control plane.
build_kube_state_metrics() {
  local v="$KUBE_STATE_METRICS_VERSION"
  if ! cached kube-state-metrics "$v"; then
    log "kube-state-metrics $v: building (cold: about 2 min)"
    local dir
    dir=$(wrapper_module kube-state-metrics "$v" "require k8s.io/kube-state-metrics/v2 $v")
    mkdir -p "$TOOLS/kube-state-metrics-$v"
    go_build_progress "$dir" "$TOOLS/kube-state-metrics-$v/kube-state-metrics" k8s.io/kube-state-metrics/v2 \
      "-X github.com/prometheus/common/version.Version=${v#v} -X github.com/prometheus/common/version.Revision=$v -X github.com/prometheus/common/version.Branch=module"
  fi
  link kube-state-metrics "$v"
}

install_redis() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    return
  fi
  log "redis-server: installing from the OS packages"
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q redis-server redis-tools >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q redis-server redis-tools >/dev/null
  }
  # The package may start a system instance on 6379; tests start their own on free ports.
  command -v redis-server >/dev/null || { echo "redis-server did not install" >&2; exit 1; }
}

# PostgreSQL for FerretDB's PostgreSQL backend: Debian's package, whose programs live in
# /usr/lib/postgresql/<version>/bin, off PATH. The tests run initdb and start a throwaway
# cluster of their own on a free port, so the system cluster Debian would create and start
# on 5432 is not wanted: a drop-in read by pg_createcluster turns it off for this install
# (older postgresql-common ignores it and creates one, which is harmless: nothing uses it).
install_postgresql() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/postgres && -x $d/initdb && -x $d/pg_isready ]] && return
  done
  command -v postgres >/dev/null && command -v initdb >/dev/null && command -v pg_isready >/dev/null && return
  log "postgresql: installing from the OS packages"
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  local dropin=/etc/postgresql-common/createcluster.d/pulse-no-main-cluster.conf
  $sudo mkdir -p "$(dirname "$dropin")"
  echo "create_main_cluster = false" | $sudo tee "$dropin" >/dev/null
  local ok=0
  $sudo apt-get install -y -q postgresql >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q postgresql >/dev/null
  } || ok=$?
  $sudo rm -f "$dropin"
  ((ok == 0)) || { echo "postgresql did not install (apt-get exit $ok)" >&2; exit 1; }
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || { echo "postgresql installed no initdb" >&2; exit 1; }
}

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(redis postgresql etcd ferretdb kubernetes kwok helm prometheus kube-state-metrics)
for c in "${components[@]}"; do
  case "$c" in
    redis) install_redis ;;
    postgresql) install_postgresql ;;
    etcd) build_etcd ;;
    ferretdb) build_ferretdb ;;
    kubernetes) build_kubernetes ;;
    kwok) build_kwok ;;
    helm) build_helm ;;
    prometheus) build_prometheus ;;
    kube-state-metrics) build_kube_state_metrics ;;
    *) echo "unknown component: $c (known: redis postgresql etcd ferretdb kubernetes kwok helm prometheus kube-state-metrics)" >&2; exit 2 ;;
  esac
done
log "stack ready in $BIN"
