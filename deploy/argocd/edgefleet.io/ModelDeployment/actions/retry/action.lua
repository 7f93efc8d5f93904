-- Roll an aborted revision out again from step 1 (edgefleet rollout retry). The token makes each click one retry;
-- the abort annotation that named the revision goes, or it would abort the retry at once.
if obj.status == nil or obj.status.abortedRevision == nil then
  error("no aborted revision: nothing to retry", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["edgefleet.io/abort"] = nil
obj.metadata.annotations["edgefleet.io/retry"] = obj.status.abortedRevision .. "/" .. tostring(os.time())
return obj
