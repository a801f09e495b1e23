#!/usr/bin/env bash
# From nothing to eventtrace's traces in Jaeger, on a local kind cluster:
#
#   tools/kind-demo.sh
#
# 1. creates the kind cluster "eventtrace-demo" (kept if it exists);
# 2. builds the image from the repository's Dockerfile and loads it into kind;
# 3. installs charts/eventtrace with jaeger.enabled=true (Jaeger v2 beside eventtrace,
#    traces in memory) and waits for both;
# 4. makes something to trace: a Deployment, rolled to a new image, and a pod whose
#    image does not exist;
# 5. port-forwards the Jaeger UI and prints its URL and the ids of the traces it holds
#    for the rollout and for the broken pod (Jaeger's HTTP API, /api/traces).
# It then keeps the port-forward open until Ctrl-C (KEEP_PORT_FORWARD=0: it exits).
#
# Needs docker, kind, kubectl, helm (3 or 4) and curl. Clean up:
#   kind delete cluster --name eventtrace-demo
#
# Settings (environment): CLUSTER, NAMESPACE, DEMO_NAMESPACE, UI_PORT, TRACE_WAIT
# (seconds to wait for the traces), KEEP_PORT_FORWARD.

set -euo pipefail

CLUSTER="${CLUSTER:-eventtrace-demo}"
NAMESPACE="${NAMESPACE:-eventtrace}"
DEMO_NAMESPACE="${DEMO_NAMESPACE:-eventtrace-demo}"
UI_PORT="${UI_PORT:-16686}"
TRACE_WAIT="${TRACE_WAIT:-300}"
KEEP_PORT_FORWARD="${KEEP_PORT_FORWARD:-1}"

RELEASE=eventtrace
CONTEXT="kind-${CLUSTER}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="${ROOT}/charts/eventtrace"

# The image built here and the chart's image values that name it.
IMAGE_REPOSITORY=eventtrace
IMAGE_TAG=dev
IMAGE="${IMAGE_REPOSITORY}:${IMAGE_TAG}"

# The chart's in-chart Jaeger Service: <release full name>-jaeger; the release name
# "eventtrace" contains the chart's name, so its full name is just "eventtrace".
JAEGER_SERVICE="${RELEASE}-jaeger"
UI="http://localhost:${UI_PORT}"

# The sample workloads: a Deployment rolled from one public image to the next, and a
# pod whose image tag does not exist.
APP=hello
APP_IMAGE=nginx:1.27
APP_NEXT_IMAGE=nginx:1.28
BROKEN=broken
BROKEN_IMAGE=nginx:no-such-tag

# Object spans leave once a rollout has been quiet this long (120s by default).
TRACE_IDLE=30s

say() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'kind-demo: %s\n' "$*" >&2
  exit 1
}

# kubectl, always on the demo cluster (never the current context).
K=(kubectl --context "${CONTEXT}")

PORT_FORWARD_PID=""
cleanup() {
  if [[ -n "${PORT_FORWARD_PID}" ]]; then
    kill "${PORT_FORWARD_PID}" 2>/dev/null || true
    wait "${PORT_FORWARD_PID}" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in docker kind kubectl helm curl; do
  command -v "${tool}" >/dev/null 2>&1 || die "needs ${tool} on PATH"
done

say "kind cluster ${CLUSTER}"
# Read whole first: grep -q stops at the first match, and pipefail would then count
# kind's write to the closed pipe as a failure.
clusters="$(kind get clusters 2>/dev/null || true)"
if grep -qx -- "${CLUSTER}" <<<"${clusters}"; then
  echo "already there: reusing it"
else
  kind create cluster --name "${CLUSTER}" --wait 120s
fi

say "image ${IMAGE}, from ${ROOT}/Dockerfile"
(cd "${ROOT}" && docker build -t "${IMAGE}" .)
kind load docker-image "${IMAGE}" --name "${CLUSTER}"

say "helm chart ${CHART} as release ${RELEASE} in namespace ${NAMESPACE}, with Jaeger"
# pullPolicy Never: the image is only in the kind node (kind load), not in a registry.
helm upgrade --install "${RELEASE}" "${CHART}" \
  --kube-context "${CONTEXT}" \
  --namespace "${NAMESPACE}" --create-namespace \
  --set jaeger.enabled=true \
  --set image.repository="${IMAGE_REPOSITORY}" \
  --set image.tag="${IMAGE_TAG}" \
  --set image.pullPolicy=Never \
  --set clusterName="${CLUSTER}" \
  --set traceIdle="${TRACE_IDLE}" \
  --wait --timeout 5m
"${K[@]}" -n "${NAMESPACE}" rollout status "deployment/${RELEASE}" --timeout 120s
"${K[@]}" -n "${NAMESPACE}" rollout status "deployment/${JAEGER_SERVICE}" --timeout 120s

say "a rollout: deployment/${APP} (${APP_IMAGE}), then rolled to ${APP_NEXT_IMAGE}"
"${K[@]}" create namespace "${DEMO_NAMESPACE}" --dry-run=client -o yaml | "${K[@]}" apply -f -
if ! "${K[@]}" -n "${DEMO_NAMESPACE}" get "deployment/${APP}" >/dev/null 2>&1; then
  "${K[@]}" -n "${DEMO_NAMESPACE}" create deployment "${APP}" --image="${APP_IMAGE}" --replicas=2
fi
"${K[@]}" -n "${DEMO_NAMESPACE}" rollout status "deployment/${APP}" --timeout 180s
# kubectl create deployment names the container after the image: nginx.
"${K[@]}" -n "${DEMO_NAMESPACE}" set image "deployment/${APP}" "nginx=${APP_NEXT_IMAGE}"
"${K[@]}" -n "${DEMO_NAMESPACE}" rollout status "deployment/${APP}" --timeout 180s

say "a pod with a missing image: pod/${BROKEN} (${BROKEN_IMAGE})"
if ! "${K[@]}" -n "${DEMO_NAMESPACE}" get "pod/${BROKEN}" >/dev/null 2>&1; then
  "${K[@]}" -n "${DEMO_NAMESPACE}" run "${BROKEN}" --image="${BROKEN_IMAGE}" --restart=Never
fi
reason=""
for _ in $(seq 1 60); do
  reason="$("${K[@]}" -n "${DEMO_NAMESPACE}" get "pod/${BROKEN}" \
    -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' 2>/dev/null || true)"
  [[ "${reason}" == ErrImagePull || "${reason}" == ImagePullBackOff ]] && break
  sleep 2
done
echo "pod/${BROKEN}: ${reason:-not failing yet}"

say "Jaeger UI on ${UI} (port-forward to service/${JAEGER_SERVICE})"
"${K[@]}" -n "${NAMESPACE}" port-forward "service/${JAEGER_SERVICE}" "${UI_PORT}:16686" >/dev/null 2>&1 &
PORT_FORWARD_PID=$!
for _ in $(seq 1 30); do
  curl -fsS -o /dev/null "${UI}/" 2>/dev/null && break
  kill -0 "${PORT_FORWARD_PID}" 2>/dev/null || die "kubectl port-forward stopped (is port ${UI_PORT} free? UI_PORT=...)"
  sleep 1
done
curl -fsS -o /dev/null "${UI}/" || die "the Jaeger UI does not answer on ${UI}"

# trace_ids SERVICE OBJECT: ids of the traces Jaeger holds with spans from SERVICE about
# the object named OBJECT (eventtrace's k8s.object.name), one a line.
trace_ids() {
  curl -fsS -G "${UI}/api/traces" \
    --data-urlencode "service=$1" \
    --data-urlencode "tags={\"k8s.object.name\":\"$2\"}" \
    --data-urlencode "lookback=1h" \
    --data-urlencode "limit=20" 2>/dev/null |
    grep -o '"traceID":"[0-9a-f]*"' | cut -d'"' -f4 | sort -u || true
}

say "waiting for the traces (up to ${TRACE_WAIT}s; object spans follow ${TRACE_IDLE} of quiet)"
rollout_ids=""
broken_ids=""
deadline=$((SECONDS + TRACE_WAIT))
while :; do
  # The rollout: the deployment controller's events on deployment/hello.
  rollout_ids="$(trace_ids deployment-controller "${APP}")"
  # The missing image: the kubelet's events on pod/broken (Failed, BackOff: errors).
  broken_ids="$(trace_ids kubelet "${BROKEN}")"
  [[ -n "${rollout_ids}" && -n "${broken_ids}" ]] && break
  ((SECONDS < deadline)) || break
  sleep 10
done

say "traces"
echo "Jaeger UI: ${UI}"
if [[ -z "${rollout_ids}${broken_ids}" ]]; then
  echo "No traces yet. Is eventtrace exporting? Look at its log:" >&2
  echo "  kubectl --context ${CONTEXT} -n ${NAMESPACE} logs -l app.kubernetes.io/name=eventtrace --prefix" >&2
  exit 1
fi
echo "rollout of deployment/${APP} (service deployment-controller):"
for id in ${rollout_ids:-}; do echo "  ${UI}/trace/${id}"; done
[[ -n "${rollout_ids}" ]] || echo "  (none yet)"
echo "pod/${BROKEN}, image ${BROKEN_IMAGE} missing (service kubelet):"
for id in ${broken_ids:-}; do echo "  ${UI}/trace/${id}"; done
[[ -n "${broken_ids}" ]] || echo "  (none yet)"
echo
echo "Again later:"
echo "  kubectl --context ${CONTEXT} -n ${NAMESPACE} port-forward service/${JAEGER_SERVICE} ${UI_PORT}:16686"
echo "Clean up:"
echo "  kind delete cluster --name ${CLUSTER}"

if [[ "${KEEP_PORT_FORWARD}" == 1 ]]; then
  echo
  echo "The Jaeger UI stays on ${UI} until Ctrl-C."
  wait "${PORT_FORWARD_PID}" || true
fi
