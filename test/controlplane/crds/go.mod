// Wrapper module: pins the upstream CRDs the tests install (data only, nothing
// here is built). Kept apart from ../go because Gateway API's own requirements
// (k8s.io/* v0.36, go 1.26) would otherwise raise ~40 of the modules that
// kube-apiserver and etcd are built from, and invalidate their build cache.
module rolloutd.dev/crds

go 1.26.0

require sigs.k8s.io/gateway-api v1.6.1
