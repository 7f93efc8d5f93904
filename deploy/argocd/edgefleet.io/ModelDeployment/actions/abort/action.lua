-- Abort the running canary: every device returns to stable and the revision is not retried until the spec changes.
if obj.status == nil or obj.status.canaryRevision == nil then
  error("no rollout in progress: nothing to abort", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["edgefleet.io/abort"] = obj.status.canaryRevision
return obj
