-- ArgoCD health of a SynqX PipelineRun (synqx.io/v1alpha1), from its phase and steps.
-- ArgoCD runs this in gopher-lua without the string library: only `..` and tostring.
local hs = {status = "Progressing", message = "Waiting for the operator to start the run"}
local function text(value)
  if value == nil then return "" end
  return tostring(value)
end
local status = obj.status
if status == nil or status.phase == nil then
  return hs
end
local function condition(kind)
  if status.conditions == nil then return nil end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then return c end
  end
  return nil
end
local function steps_in(phase)
  local names = {}
  if status.steps ~= nil then
    for _, step in ipairs(status.steps) do
      if step.phase == phase then table.insert(names, step.name) end
    end
  end
  return names
end
local phase = status.phase
if phase == "Pending" then
  local waiting = condition("Waiting")
  if waiting ~= nil then
    hs.message = "Pending: " .. text(waiting.message)
  else
    hs.message = "Pending"
  end
  return hs
end
if phase == "Running" then
  local running = steps_in("Running")
  local retrying = steps_in("Retrying")
  hs.message = "Running: " .. text(status.progress) .. " steps done"
  if #running > 0 then
    hs.message = hs.message .. "; running " .. table.concat(running, ", ")
  end
  if #retrying > 0 then
    hs.message = hs.message .. "; retrying " .. table.concat(retrying, ", ")
  end
  if obj.spec.cancel == true then
    hs.message = "Cancelling; " .. hs.message
  end
  return hs
end
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded: " .. text(status.progress) .. " steps"
  if status.duration ~= nil then
    hs.message = hs.message .. " in " .. text(status.duration)
  end
  return hs
end
if phase == "Failed" then
  hs.status = "Degraded"
  if status.steps ~= nil then
    for _, step in ipairs(status.steps) do
      if step.phase == "Failed" then
        hs.message = "Step " .. text(step.name) .. " failed"
        if step.attempt ~= nil then
          hs.message = hs.message .. " (attempt " .. text(step.attempt) .. ")"
        end
        if step.message ~= nil then
          hs.message = hs.message .. ": " .. text(step.message)
        end
        return hs
      end
    end
  end
  local ended = condition("Succeeded")
  if ended ~= nil then
    hs.message = "Failed: " .. text(ended.reason) .. ": " .. text(ended.message)
  else
    hs.message = "Failed"
  end
  return hs
end
if phase == "Cancelled" then
  hs.status = "Suspended"
  hs.message = "Cancelled: " .. text(status.progress) .. " steps done; a run with spec.resumeFrom: " .. text(obj.metadata.name) .. " goes on from here"
  return hs
end
hs.status = "Unknown"
hs.message = "Unknown phase " .. text(phase)
return hs
