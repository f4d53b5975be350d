package app_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cloud-cli-proxy/cloud-cli-proxy/app"
)

// TestErrorCodesRegistry: every ErrorCode constant of app (found in its source) is listed by
// app.ErrorCodes exactly once, the registry lists nothing else (but the invalid_<field>
// family), and no constant named Code… escapes the ErrorCode type.
func TestErrorCodesRegistry(t *testing.T) {
	fset := token.NewFileSet()
	consts := map[app.ErrorCode]string{} // value -> constant name
	for _, path := range goFiles(t, ".", false) {
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			var typ ast.Expr // a const spec without a type and value repeats the previous ones
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if vs.Type != nil || len(vs.Values) > 0 {
					typ = vs.Type
				}
				for i, name := range vs.Names {
					isCode := isIdent(typ, "ErrorCode")
					if !isCode {
						if strings.HasPrefix(name.Name, "Code") {
							t.Errorf("%s: constant %s is not of type ErrorCode", fset.Position(name.Pos()), name.Name)
						}
						continue
					}
					if i >= len(vs.Values) {
						t.Errorf("%s: ErrorCode constant %s has no value of its own", fset.Position(name.Pos()), name.Name)
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Errorf("%s: ErrorCode constant %s is not a string literal", fset.Position(name.Pos()), name.Name)
						continue
					}
					v, _ := strconv.Unquote(lit.Value)
					if !name.IsExported() {
						if v != "invalid_<field>" {
							t.Errorf("%s: ErrorCode constant %s is not exported", fset.Position(name.Pos()), name.Name)
						}
						continue
					}
					if other, dup := consts[app.ErrorCode(v)]; dup {
						t.Errorf("constants %s and %s are both %q", other, name.Name, v)
					}
					consts[app.ErrorCode(v)] = name.Name
				}
			}
		}
	}
	if len(consts) < 40 {
		t.Fatalf("found only %d ErrorCode constants in app's source; the parse is broken", len(consts))
	}
	listed := map[app.ErrorCode]bool{}
	for _, info := range app.ErrorCodes() {
		if listed[info.Code] {
			t.Errorf("ErrorCodes lists %q twice", info.Code)
		}
		listed[info.Code] = true
		if info.Meaning == "" || strings.Contains(info.Meaning, "\n") || strings.Contains(info.Meaning, "|") {
			t.Errorf("ErrorCodes: %q needs a one-line meaning without |", info.Code)
		}
		if _, ok := consts[info.Code]; !ok && info.Code != "invalid_<field>" {
			t.Errorf("ErrorCodes lists %q, which is no ErrorCode constant", info.Code)
		}
	}
	for v, name := range consts {
		if !listed[v] {
			t.Errorf("constant %s (%q) is missing from app.ErrorCodes", name, v)
		}
	}
	if got := app.InvalidFieldCode("egress.wg[0]"); got != "invalid_egress_wg_0_" || got.String() != "invalid_egress_wg_0_" {
		t.Errorf("InvalidFieldCode = %q", got)
	}
}

// The packages whose error codes must be constants of app.
var codeDirs = []string{".", "../api", "../sshd", "../tui", "../cmd", "../runtime", "../storage", "../tunnel", "../internal"}

// TestNoLiteralErrorCodes: no Go file of the doors, the service or the runtimes spells an
// error code as a string literal; they use app's constants (app/codes.go alone holds the
// literals). Checked on the syntax tree:
//   - a composite literal's Code field (app.Error, TaskError, RuntimeError, the API's error
//     body) holding a string literal (a call like app.InvalidFieldCode("cpu") is fine);
//   - a string literal passed for a parameter of type ErrorCode (conflict, unavailable,
//     badRequest, errBody, rtErr, … — found by their signatures);
//   - X.Code compared (==, !=, switch case) with or assigned a string literal;
//   - a constant named Code… holding a string literal.
func TestNoLiteralErrorCodes(t *testing.T) {
	var files []*ast.File
	fset := token.NewFileSet()
	for _, dir := range codeDirs {
		for _, path := range goFiles(t, dir, true) {
			if filepath.Clean(path) == "codes.go" {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	params := codeParams(files)
	for _, fn := range []string{"conflict", "unavailable", "badRequest", "errBody", "rtErr", "gwAppError", "checkUnique"} {
		if _, ok := params[fn]; !ok {
			t.Errorf("no ErrorCode parameter found for %s: the signature scan is broken", fn)
		}
	}
	for _, f := range files {
		for _, p := range literalCodes(fset, f, params) {
			t.Errorf("%s: error code spelled as a literal; use (or add) a constant in app/codes.go", p)
		}
	}
}

// TestLiteralCodeCheck: the check of TestNoLiteralErrorCodes finds each form it claims to.
func TestLiteralCodeCheck(t *testing.T) {
	const src = `package x
func refuse(kind int, code app.ErrorCode, msg string) error { return nil }
const CodeLocal = "local"
func f(err error) {
	_ = &app.Error{Code: "a"}
	_ = app.TaskError{Code: "b" + x}
	_ = refuse(1, "c", "fine: a message")
	if app.AsError(err).Code == "d" {}
	if "e" != e.Code {}
	switch e.Code { case "f", app.CodeNotFound: }
	e.Code = "g"
	_ = &app.Error{Code: app.InvalidFieldCode("fine"), Message: "fine"}
	_ = ShellExit{Code: 1}
}`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := literalCodes(fset, f, codeParams([]*ast.File{f}))
	if len(got) != 8 {
		t.Errorf("found %d literal codes, want 8 (CodeLocal, a to g): %v", len(got), got)
	}
}

// goFiles lists the Go files under dir (recursively when deep), without tests.
func goFiles(t *testing.T, dir string, deep bool) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && (!deep || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no Go files under %s", dir)
	}
	sort.Strings(out)
	return out
}

func isIdent(e ast.Expr, name string) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name == name
	case *ast.SelectorExpr:
		return e.Sel.Name == name
	}
	return false
}

// codeParams maps each function name to the positions of its ErrorCode parameters.
func codeParams(files []*ast.File) map[string][]int {
	out := map[string][]int{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			var name string
			var ft *ast.FuncType
			switch n := n.(type) {
			case *ast.FuncDecl:
				name, ft = n.Name.Name, n.Type
			case *ast.AssignStmt: // bad := func(code app.ErrorCode, …)
				if len(n.Lhs) == 1 && len(n.Rhs) == 1 {
					if id, ok := n.Lhs[0].(*ast.Ident); ok {
						if fl, ok := n.Rhs[0].(*ast.FuncLit); ok {
							name, ft = id.Name, fl.Type
						}
					}
				}
			}
			if ft == nil {
				return true
			}
			i := 0
			for _, field := range ft.Params.List {
				k := max(len(field.Names), 1)
				if isIdent(field.Type, "ErrorCode") {
					for j := 0; j < k; j++ {
						out[name] = append(out[name], i+j)
					}
				}
				i += k
			}
			return true
		})
	}
	return out
}

// hasLiteral reports whether e holds a non-empty string literal outside a call's arguments
// (conversions excepted).
func hasLiteral(e ast.Expr) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "string" || isIdent(n.Fun, "ErrorCode") {
				return true // a conversion
			}
			return false
		case *ast.BasicLit:
			if n.Kind == token.STRING && n.Value != `""` { // "" is no code
				found = true
			}
		}
		return !found
	})
	return found
}

func isCodeField(e ast.Expr) bool {
	s, ok := e.(*ast.SelectorExpr)
	return ok && s.Sel.Name == "Code"
}

// literalCodes lists the places of f that spell an error code as a literal.
func literalCodes(fset *token.FileSet, f *ast.File, params map[string][]int) []string {
	var out []string
	add := func(n ast.Node, what string) {
		out = append(out, fmt.Sprintf("%s: %s", fset.Position(n.Pos()), what))
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec:
			for i, name := range n.Names {
				if strings.HasPrefix(name.Name, "Code") && i < len(n.Values) && hasLiteral(n.Values[i]) {
					add(n, "constant "+name.Name)
				}
			}
		case *ast.CompositeLit:
			for _, el := range n.Elts {
				if kv, ok := el.(*ast.KeyValueExpr); ok && isIdent(kv.Key, "Code") && hasLiteral(kv.Value) {
					add(kv, "Code field")
				}
			}
		case *ast.CallExpr:
			var name string
			switch fn := n.Fun.(type) {
			case *ast.Ident:
				name = fn.Name
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			}
			for _, i := range params[name] {
				if i < len(n.Args) && hasLiteral(n.Args[i]) {
					add(n.Args[i], "argument of "+name)
				}
			}
		case *ast.BinaryExpr:
			if (n.Op == token.EQL || n.Op == token.NEQ) &&
				(isCodeField(n.X) && hasLiteral(n.Y) || isCodeField(n.Y) && hasLiteral(n.X)) {
				add(n, "comparison with .Code")
			}
		case *ast.SwitchStmt:
			if n.Tag != nil && isCodeField(n.Tag) {
				for _, c := range n.Body.List {
					for _, e := range c.(*ast.CaseClause).List {
						if hasLiteral(e) {
							add(e, "case of a switch on .Code")
						}
					}
				}
			}
		case *ast.AssignStmt:
			for i, l := range n.Lhs {
				if isCodeField(l) && i < len(n.Rhs) && hasLiteral(n.Rhs[i]) {
					add(n, "assignment to .Code")
				}
			}
		}
		return true
	})
	return out
}
