-- Argo CD health of an edgefleet.io ModelDeployment (resource.customizations.health.edgefleet.io_ModelDeployment).
-- Reads what the operator writes: status.observedGeneration, the Ready/Reconciling/Stalled conditions and
-- status.phase. Runs in Argo CD's Lua sandbox (base, table and a safe os only: no string library).
local hs = {}

local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function message(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting: the operator removes the model from every device first"
  return hs
end

local status = obj.status
local ready = condition(status, "Ready")
local generation = obj.metadata.generation
if status == nil or ready == nil or status.observedGeneration == nil or
    (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the edgefleet operator to reconcile generation " .. tostring(generation)
  return hs
end

local stalled = condition(status, "Stalled")
local phase = status.phase
if phase == "RolledBack" then
  hs.status = "Degraded"
  if condition(status, "Reconciling") ~= nil then
    hs.message = "Rolling back: " .. message(ready, "devices are returning to the stable revision")
  else
    hs.message = message(ready, "Rolled back to the stable revision")
  end
  return hs
end
if (stalled ~= nil and stalled.status == "True") or phase == "Degraded" or phase == "Stalled" then
  hs.status = "Degraded"
  hs.message = message(stalled, message(ready, "Rollout failed"))
  return hs
end
if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = message(ready, "Rollout paused")
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message(ready, "Rollout complete")
  return hs
end
hs.status = "Progressing"
hs.message = message(ready, "Rollout in progress")
return hs
