-- Skip every remaining step of the running canary up to its last setWeight: 100 (edgefleet rollout promote --full).
if obj.status == nil or obj.status.canaryRevision == nil then
  error("no rollout in progress: nothing to promote", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["edgefleet.io/promote-full"] = obj.status.canaryRevision
return obj
