-- Lift the hold of the pause action (spec.paused in Git still holds the rollout).
if obj.metadata.annotations ~= nil then
  obj.metadata.annotations["edgefleet.io/paused"] = nil
end
return obj
