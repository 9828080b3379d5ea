-- ArgoCD health of a SynqX Pipeline (synqx.io/v1alpha1), from its conditions and last run.
-- ArgoCD runs this in gopher-lua without the string library: only `..` and tostring.
local hs = {status = "Progressing", message = "Waiting for the operator to compile the Pipeline"}
local function text(value)
  if value == nil then return "" end
  return tostring(value)
end
local status = obj.status
if status == nil then
  return hs
end
if obj.metadata.generation ~= nil and status.observedGeneration ~= obj.metadata.generation then
  hs.message = "Waiting for the operator to compile generation " .. text(obj.metadata.generation)
  return hs
end
local ready = nil
local connections = nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then ready = condition end
    if condition.type == "ConnectionsReady" then connections = condition end
  end
end
if ready == nil then
  return hs
end
if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = text(ready.reason) .. ": " .. text(ready.message)
  return hs
end
if ready.status ~= "True" then
  return hs
end
if obj.spec.schedule ~= nil and obj.spec.schedule.suspend == true then
  hs.status = "Suspended"
  hs.message = "Schedule suspended (spec.schedule.suspend); " .. text(ready.message)
  return hs
end
if connections ~= nil and connections.status == "False" then
  hs.status = "Degraded"
  hs.message = "Connections not ready: " .. text(connections.message)
  return hs
end
local last = status.lastRun
if last ~= nil and last.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Last run " .. text(last.name) .. " failed (kubectl describe pipelinerun " .. text(last.name) .. ")"
  return hs
end
hs.status = "Healthy"
hs.message = text(ready.message)
if last ~= nil and last.phase ~= nil then
  hs.message = hs.message .. "; last run " .. text(last.name) .. " " .. text(last.phase)
end
return hs
