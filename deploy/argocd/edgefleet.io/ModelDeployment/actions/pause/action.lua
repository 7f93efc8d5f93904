-- Hold the rollout: no device is moved forward until resumed (a rollback still proceeds).
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["edgefleet.io/paused"] = "true"
return obj
