//go:build ignore

// funclen lists the longest functions (and methods) in the non-test Go files below the given
// directories, by lines from "func" to the closing brace: go run scripts/funclen.go [-n 5] internal
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	n := flag.Int("n", 5, "how many to list")
	flag.Parse()
	type fn struct {
		name  string
		lines int
	}
	var fns []fn
	fset := token.NewFileSet()
	for _, root := range flag.Args() {
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			for _, decl := range f.Decls {
				fd, ok := decl.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				name := fd.Name.Name
				if fd.Recv != nil && len(fd.Recv.List) > 0 {
					t := fd.Recv.List[0].Type
					if s, ok := t.(*ast.StarExpr); ok {
						t = s.X
					}
					if id, ok := t.(*ast.Ident); ok {
						name = id.Name + "." + name
					}
				}
				start, end := fset.Position(fd.Pos()), fset.Position(fd.End())
				fns = append(fns, fn{fmt.Sprintf("%s:%d %s", path, start.Line, name), end.Line - start.Line + 1})
			}
			return nil
		})
	}
	sort.SliceStable(fns, func(i, j int) bool { return fns[i].lines > fns[j].lines })
	for i := 0; i < *n && i < len(fns); i++ {
		fmt.Printf("%4d %s\n", fns[i].lines, fns[i].name)
	}
}
