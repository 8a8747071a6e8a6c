package terraform

import (
	"fmt"
	"go/types"
	"slices"
	"strings"
	"sync"

	"golang.org/x/tools/go/callgraph/rta"
	"golang.org/x/tools/go/callgraph/vta"
	"golang.org/x/tools/go/packages"
	"golang.org/x/tools/go/ssa"
	"golang.org/x/tools/go/ssa/ssautil"
)

// module is sandrun's Go module path.
const module = "github.com/sandrun/sandrun"

// programRoots are the functions each deployed program runs: cmd/X's main
// goes through internal/programs to these (the people's command line,
// internal/cli, with dev, exec and bench, is not linked). The reaper's loop
// runs in the dispatcher's process (RunDispatcher); cmd/reaper, a
// standalone reaper for a dispatcher run with --reaper=false, is not
// deployed. Each program also
// sets up its telemetry (export.Setup), whose Google exporters call Cloud
// Trace and Cloud Monitoring as the program.
var programRoots = map[string][]string{
	"dispatcher": {module + "/internal/system.RunDispatcher", exportSetup},
	"executor":   {module + "/internal/system.RunHost", exportSetup},
}

const exportSetup = module + "/internal/telemetry/export.Setup"

// clientPackages are the official Google clients whose calls reach an API.
// Their *pb packages (request and response messages) are not: building or
// reading a message calls nothing.
var clientPackages = []string{
	"cloud.google.com/go/firestore",
	"cloud.google.com/go/storage",
	"cloud.google.com/go/pubsub/v2",
	"cloud.google.com/go/run/apiv2",
	"cloud.google.com/go/iam/credentials/apiv1",
	"cloud.google.com/go/longrunning",
	// Google's OpenTelemetry exporters: sandrun only constructs them, and
	// the SDK calls them through its exporter interfaces, so the row of
	// each constructor names the RPCs its exports make.
	googleExporters + "exporter/trace",
	googleExporters + "exporter/metric",
}

const googleExporters = "github.com/GoogleCloudPlatform/opentelemetry-operations-go/"

// isClient reports whether a function or method of package path belongs to
// an official Google client (and not to its messages).
func isClient(path string) bool {
	for _, p := range clientPackages {
		if (path == p || strings.HasPrefix(path, p+"/")) && !strings.HasSuffix(path, "pb") {
			return true
		}
	}
	return false
}

// inModule reports whether f is sandrun's own code; a generic function's
// instantiations belong to the package of their origin.
func inModule(f *ssa.Function) bool {
	if o := f.Origin(); o != nil {
		f = o
	}
	return f.Pkg != nil && strings.HasPrefix(f.Pkg.Pkg.Path(), module)
}

// callName names a client function the way permissions.csv does:
// firestore.(*Transaction).Delete, storage.(*ObjectHandle).NewWriter,
// exporter/trace.New.
func callName(obj types.Object) string {
	short := func(p *types.Package) string {
		return strings.TrimPrefix(strings.TrimPrefix(p.Path(), "cloud.google.com/go/"), googleExporters)
	}
	fn, ok := obj.(*types.Func)
	if !ok {
		return short(obj.Pkg()) + "." + obj.Name()
	}
	sig := fn.Type().(*types.Signature)
	if sig.Recv() == nil {
		return short(fn.Pkg()) + "." + fn.Name()
	}
	recv := sig.Recv().Type()
	ptr := ""
	if p, ok := recv.(*types.Pointer); ok {
		ptr, recv = "*", p.Elem()
	}
	named, ok := recv.(*types.Named)
	if !ok {
		return short(fn.Pkg()) + "." + fn.Name()
	}
	return fmt.Sprintf("%s.(%s%s).%s", short(fn.Pkg()), ptr, named.Obj().Name(), fn.Name())
}

// programCalls loads sandrun, builds it as SSA, and returns for each
// program the client functions that code reachable from its root calls,
// each with the first sandrun function found calling it. Reachability is
// Rapid Type Analysis: a call through an interface counts for every type
// the program converts to that interface, so the set can only be too
// large, never too small.
var programCalls = sync.OnceValues(func() (map[string]map[string]string, error) {
	cfg := &packages.Config{Mode: packages.LoadAllSyntax, Dir: ".."}
	pkgs, err := packages.Load(cfg, "./internal/system", "./internal/telemetry/export")
	if err != nil {
		return nil, fmt.Errorf("load sandrun: %w", err)
	}
	if n := packages.PrintErrors(pkgs); n > 0 {
		return nil, fmt.Errorf("load sandrun: %d errors", n)
	}
	prog, _ := ssautil.AllPackages(pkgs, ssa.InstantiateGenerics)
	prog.Build()

	funcs := map[string]*ssa.Function{}
	for f := range ssautil.AllFunctions(prog) {
		if f.Pkg != nil && f.Parent() == nil {
			funcs[f.Pkg.Pkg.Path()+"."+f.Name()] = f
		}
	}
	out := map[string]map[string]string{}
	for program, names := range programRoots {
		var roots []*ssa.Function
		for _, root := range names {
			fn := funcs[root]
			if fn == nil {
				return nil, fmt.Errorf("%s: no function %s", program, root)
			}
			roots = append(roots, fn)
		}
		res := rta.Analyze(roots, true)
		fset := map[*ssa.Function]bool{}
		for f := range res.Reachable {
			fset[f] = true
		}
		cg := vta.CallGraph(fset, res.CallGraph)
		reach := map[*ssa.Function]bool{}
		for _, fn := range roots {
			reach[fn] = true
		}
		queue := slices.Clone(roots)
		for len(queue) > 0 {
			f := queue[0]
			queue = queue[1:]
			node := cg.Nodes[f]
			if node == nil {
				continue
			}
			for _, e := range node.Out {
				if g := e.Callee.Func; !reach[g] {
					reach[g] = true
					queue = append(queue, g)
				}
			}
		}
		calls := map[string]string{}
		for f := range reach {
			if !inModule(f) {
				continue
			}
			for _, b := range f.Blocks {
				for _, instr := range b.Instrs {
					site, ok := instr.(ssa.CallInstruction)
					if !ok {
						continue
					}
					var obj types.Object
					if callee := site.Common().StaticCallee(); callee != nil {
						if o := callee.Origin(); o != nil {
							callee = o
						}
						obj = callee.Object()
					} else if m := site.Common().Method; m != nil {
						obj = m
					}
					if obj == nil || obj.Pkg() == nil || !isClient(obj.Pkg().Path()) {
						continue
					}
					name := callName(obj)
					if _, seen := calls[name]; !seen {
						calls[name] = f.String()
					}
				}
			}
		}
		out[program] = calls
	}
	return out, nil
})
