// The ArgoCD health-check harness: gopher-lua, the Lua engine ArgoCD runs health checks in.
module synqx.io/tests/argocd-health

go 1.24

require (
	github.com/yuin/gopher-lua v1.1.2
	gopkg.in/yaml.v3 v3.0.1
)
