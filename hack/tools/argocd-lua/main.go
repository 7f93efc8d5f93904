// Command argocd-lua runs Argo CD resource customizations (health checks, action discovery, actions) on captured
// objects, in gopher-lua, the interpreter Argo CD embeds, with the same libraries Argo CD opens for them.
//
//	argocd-lua health    health.lua    obj.json...  -> one {"file","status","message"} line per object
//	argocd-lua discovery discovery.lua obj.json...  -> one {"file","actions":{name:{"disabled":bool}}} line each
//	argocd-lua action    action.lua    obj.json...  -> one {"file","object":{...}} line each (the returned object)
//
// Like Argo CD (util/lua): the standard libraries are skipped, then package, base, table and a safe os (time and
// date only) are opened; the object is the global `obj`; a script gets one second. A script error exits 1 with the
// file named. This is a test tool of edgefleet (hack/build-go-tool.sh builds and caches it).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua health|discovery|action SCRIPT OBJECT.json...")
		os.Exit(2)
	}
	mode, scriptPath, files := os.Args[1], os.Args[2], os.Args[3:]
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		fail("%v", err)
	}
	out := json.NewEncoder(os.Stdout)
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			fail("%v", err)
		}
		var obj map[string]any
		if err := json.Unmarshal(raw, &obj); err != nil {
			fail("%s: not a JSON object: %v", file, err)
		}
		result, err := run(string(script), obj)
		if err != nil {
			fail("%s: %s: %v", scriptPath, file, err)
		}
		line := map[string]any{"file": file}
		switch mode {
		case "health":
			table, ok := result.(map[string]any)
			if !ok {
				fail("%s: %s: health script returned %T, want a table", scriptPath, file, result)
			}
			line["status"], line["message"] = table["status"], table["message"]
		case "discovery":
			line["actions"] = result
		case "action":
			line["object"] = result
		default:
			fail("unknown mode %q (health, discovery or action)", mode)
		}
		if err := out.Encode(line); err != nil {
			fail("%v", err)
		}
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "argocd-lua: "+format+"\n", args...)
	os.Exit(1)
}

func run(script string, obj map[string]any) (any, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	l.PreloadModule(lua.OsLibName, func(l *lua.LState) int {
		l.Push(l.SetFuncs(l.NewTable(), safeOs))
		return 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	return fromLua(l.Get(-1)), nil
}

var safeOs = map[string]lua.LGFunction{
	"time": func(l *lua.LState) int { l.Push(lua.LNumber(time.Now().Unix())); return 1 },
	"date": func(l *lua.LState) int {
		// The one form resource actions use: os.date("!%Y-%m-%dT%H:%M:%SZ") for a UTC timestamp.
		l.Push(lua.LString(time.Now().UTC().Format("2006-01-02T15:04:05Z")))
		return 1
	},
}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.OsLibName, safeOs))
	return 1
}

func toLua(l *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case float64:
		return lua.LNumber(x)
	case string:
		return lua.LString(x)
	case []any:
		t := l.NewTable()
		for _, item := range x {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.NewTable()
		for k, item := range x {
			t.RawSetString(k, toLua(l, item))
		}
		return t
	}
	panic(fmt.Sprintf("unexpected JSON value %T", v))
}

// fromLua converts a result back: a table whose keys are exactly 1..n is a JSON array, any other table an object.
func fromLua(v lua.LValue) any {
	switch x := v.(type) {
	case *lua.LNilType:
		return nil
	case lua.LBool:
		return bool(x)
	case lua.LNumber:
		return float64(x)
	case lua.LString:
		return string(x)
	case *lua.LTable:
		n := x.Len()
		count := 0
		x.ForEach(func(lua.LValue, lua.LValue) { count++ })
		if n > 0 && n == count {
			items := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				items = append(items, fromLua(x.RawGetInt(i)))
			}
			return items
		}
		m := map[string]any{}
		keys := []string{}
		x.ForEach(func(k, item lua.LValue) {
			keys = append(keys, k.String())
			m[k.String()] = fromLua(item)
		})
		sort.Strings(keys)
		return m
	}
	return v.String()
}
