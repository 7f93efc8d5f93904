-- Argo CD health of an edgefleet.io EdgeDevice (resource.customizations.health.edgefleet.io_EdgeDevice).
-- The edge agent writes Ready (converged), Healthy (the served models within their thresholds), Reconciling while
-- installing and Stalled when a desired version was rejected. A device that never reported is Missing-like: its
-- agent has not connected yet, which Argo CD shows as Progressing.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local ready = condition("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the device's agent to report"
  return hs
end
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end
local healthy = condition("Healthy")
if healthy ~= nil and healthy.status == "False" then
  hs.status = "Degraded"
  hs.message = healthy.message
  return hs
end
local reconciling = condition("Reconciling")
if ready.status ~= "True" or (reconciling ~= nil and reconciling.status == "True") then
  hs.status = "Progressing"
  hs.message = ready.message
  return hs
end
hs.status = "Healthy"
hs.message = ready.message
return hs
