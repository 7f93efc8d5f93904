// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils pkg/kstatus/status.Compute, the library behind
// `kubectl wait`-style health in kpt, Config Sync and Flux) computes for captured objects, and, with --flux-exprs,
// what Flux's kustomize-controller computes from a Kustomization's spec.healthCheckExprs for them (the evaluator of
// github.com/fluxcd/pkg/runtime/cel, the code kustomize-controller runs).
//
//	kstatus [--flux-exprs exprs.json] obj.json...   -> one {"file","status","message","flux"} line per object
//
// exprs.json holds one healthCheckExprs entry: {"current": "...", "inProgress": "...", "failed": "..."}.
// This is a test tool of edgefleet (hack/build-go-tool.sh builds and caches it).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/fluxcd/pkg/apis/kustomize"
	fluxcel "github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	exprsPath := flag.String("flux-exprs", "", "JSON file with one healthCheckExprs entry (current, inProgress, failed)")
	flag.Parse()
	var evaluator *fluxcel.StatusEvaluator
	if *exprsPath != "" {
		raw, err := os.ReadFile(*exprsPath)
		if err != nil {
			fail("%v", err)
		}
		var exprs kustomize.HealthCheckExpressions
		if err := json.Unmarshal(raw, &exprs); err != nil {
			fail("%s: %v", *exprsPath, err)
		}
		if evaluator, err = fluxcel.NewStatusEvaluator(&exprs); err != nil {
			fail("%s: %v", *exprsPath, err)
		}
	}
	out := json.NewEncoder(os.Stdout)
	for _, file := range flag.Args() {
		raw, err := os.ReadFile(file)
		if err != nil {
			fail("%v", err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			fail("%s: %v", file, err)
		}
		result, err := status.Compute(u)
		if err != nil {
			fail("%s: %v", file, err)
		}
		line := map[string]any{"file": file, "status": string(result.Status), "message": result.Message}
		if evaluator != nil {
			flux, err := evaluator.Evaluate(context.Background(), u)
			if err != nil {
				fail("%s: flux healthCheckExprs: %v", file, err)
			}
			line["flux"] = string(flux.Status)
		}
		if err := out.Encode(line); err != nil {
			fail("%v", err)
		}
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(1)
}
