-- Complete the current pause or analysis step (edgefleet rollout promote): names the revision and step index, so a
-- repeated or late click cannot promote a later step.
if obj.status == nil or obj.status.canaryRevision == nil or obj.status.currentStepIndex == nil then
  error("no rollout in progress: nothing to promote", 0)
end
local step = obj.spec.rollout.steps[obj.status.currentStepIndex + 1]
if step ~= nil and step.setWeight ~= nil then
  error("step " .. tostring(obj.status.currentStepIndex + 1) .. " is a setWeight step and completes when its devices run the canary; use promote-full to skip the remaining steps", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["edgefleet.io/promote"] = obj.status.canaryRevision .. "/" .. tostring(obj.status.currentStepIndex)
return obj
