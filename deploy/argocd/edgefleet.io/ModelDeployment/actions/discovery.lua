-- Which resource actions Argo CD offers on a ModelDeployment, and which are greyed out now.
-- The actions set the annotations the operator reads (each names the revision or step it acts on).
local actions = {}
local status = obj.status or {}
local annotations = (obj.metadata ~= nil and obj.metadata.annotations) or {}
local canary = status.canaryRevision ~= nil
local held = obj.spec.paused == true or annotations["edgefleet.io/paused"] == "true"
local steps = (obj.spec.rollout or {}).steps or {}
local index = status.currentStepIndex
local step = nil
if index ~= nil then
  step = steps[index + 1]
end
local promotable = canary and not held and step ~= nil and step.setWeight == nil

actions["promote"] = {["disabled"] = not promotable}
actions["promote-full"] = {["disabled"] = not canary or held}
actions["abort"] = {["disabled"] = not canary}
actions["pause"] = {["disabled"] = annotations["edgefleet.io/paused"] == "true"}
actions["resume"] = {["disabled"] = annotations["edgefleet.io/paused"] ~= "true"}
actions["retry"] = {["disabled"] = status.abortedRevision == nil}
return actions
