-- ArgoCD health of a SynqX Connection (synqx.io/v1alpha1), from its Ready condition, which
-- the operator sets from a check Job that connects without writing.
-- ArgoCD runs this in gopher-lua without the string library: only `..` and tostring.
local hs = {status = "Progressing", message = "Waiting for the operator to check the Connection"}
local function text(value)
  if value == nil then return "" end
  return tostring(value)
end
local status = obj.status
if status == nil or status.conditions == nil then
  return hs
end
local ready = nil
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then ready = condition end
end
if ready == nil then
  return hs
end
if obj.metadata.generation ~= nil and status.observedGeneration ~= obj.metadata.generation then
  hs.message = "Waiting for the operator to check generation " .. text(obj.metadata.generation)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready.reason) .. ": " .. text(ready.message)
  return hs
end
if ready.reason == "Checking" then
  hs.message = "Checking: " .. text(ready.message)
  return hs
end
hs.status = "Degraded"
hs.message = text(ready.reason) .. ": " .. text(ready.message)
return hs
