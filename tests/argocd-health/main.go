// argocd-health runs SynqX's ArgoCD health checks the way ArgoCD does: in gopher-lua with
// only the package, base, table and a safe os library, the resource as the global `obj`,
// and a one-second limit. It reads each folder's health_test.yaml (ArgoCD's format) and
// reports every case whose status or message differs.
//
//	argocd-health FOLDER...   each with health.lua, health_test.yaml and its inputs
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
	"gopkg.in/yaml.v3"
)

type expected struct {
	Status  string `yaml:"status"`
	Message string `yaml:"message"`
}

type testCase struct {
	HealthStatus expected `yaml:"healthStatus"`
	InputPath    string   `yaml:"inputPath"`
}

type testFile struct {
	Tests []testCase `yaml:"tests"`
}

var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

// The os functions ArgoCD leaves to scripts: none that touch files, processes or the environment.
var unsafeOs = []string{"execute", "exit", "getenv", "remove", "rename", "setenv", "setlocale", "tmpname"}

func openSafeOs(l *lua.LState) int {
	lua.OpenOs(l)
	module := l.GetGlobal(lua.OsLibName).(*lua.LTable)
	for _, name := range unsafeOs {
		module.RawSetString(name, lua.LNil)
	}
	l.Push(module)
	return 1
}

func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []any:
		table := l.NewTable()
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]any:
		table := l.NewTable()
		for key, item := range v {
			table.RawSetString(key, toLua(l, item))
		}
		return table
	default:
		return lua.LString(fmt.Sprint(v))
	}
}

// health runs script on the resource and returns the status and message it set.
func health(script string, resource map[string]any) (expected, error) {
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
		l.Push(l.NewFunction(lib.open))
		l.Push(lua.LString(lib.name))
		l.Call(1, 0)
	}
	l.PreloadModule(lua.OsLibName, openSafeOs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, resource))
	if err := l.DoString(script); err != nil {
		return expected{}, err
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return expected{}, fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	got := expected{
		Status:  lua.LVAsString(table.RawGetString("status")),
		Message: lua.LVAsString(table.RawGetString("message")),
	}
	if !validStatus[got.Status] {
		return got, fmt.Errorf("%q is not a health status ArgoCD knows", got.Status)
	}
	return got, nil
}

func runFolder(folder string) (passed, failed int, err error) {
	script, err := os.ReadFile(filepath.Join(folder, "health.lua"))
	if err != nil {
		return 0, 0, err
	}
	text, err := os.ReadFile(filepath.Join(folder, "health_test.yaml"))
	if err != nil {
		return 0, 0, err
	}
	var tests testFile
	if err := yaml.Unmarshal(text, &tests); err != nil {
		return 0, 0, fmt.Errorf("%s/health_test.yaml: %w", folder, err)
	}
	if len(tests.Tests) == 0 {
		return 0, 0, fmt.Errorf("%s/health_test.yaml has no tests", folder)
	}
	for _, test := range tests.Tests {
		input, err := os.ReadFile(filepath.Join(folder, test.InputPath))
		if err != nil {
			return passed, failed, err
		}
		var resource map[string]any
		if err := yaml.Unmarshal(input, &resource); err != nil {
			return passed, failed, fmt.Errorf("%s/%s: %w", folder, test.InputPath, err)
		}
		got, err := health(string(script), resource)
		switch {
		case err != nil:
			failed++
			fmt.Printf("FAIL %s %s: %v\n", folder, test.InputPath, err)
		case got != test.HealthStatus:
			failed++
			fmt.Printf("FAIL %s %s:\n  want %s %q\n  got  %s %q\n", folder, test.InputPath,
				test.HealthStatus.Status, test.HealthStatus.Message, got.Status, got.Message)
		default:
			passed++
			fmt.Printf("ok   %s %s: %s %q\n", folder, test.InputPath, got.Status, got.Message)
		}
	}
	return passed, failed, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health FOLDER... (each with health.lua and health_test.yaml)")
		os.Exit(2)
	}
	passed, failed := 0, 0
	for _, folder := range os.Args[1:] {
		p, f, err := runFolder(folder)
		passed, failed = passed+p, failed+f
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			os.Exit(2)
		}
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
