package docs

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"unicode"

	"github.com/google/go-cmp/cmp"
)

// TestRepositoryLinks checks every relative link of the repository's
// Markdown files.
func TestRepositoryLinks(t *testing.T) {
	root := ".."
	files := markdownFiles(t, root)
	if len(files) == 0 {
		t.Fatal("no Markdown files found")
	}
	for _, p := range checkLinks(os.DirFS(root), files) {
		t.Error(p)
	}
}

// TestCheckLinks shows that checkLinks finds each kind of broken link, and
// only those.
func TestCheckLinks(t *testing.T) {
	base := fstest.MapFS{
		"README.md":            {Data: []byte("# Title\n\n## Running it\n\n## Running it\n\n## `HTTP_ADDR` and Request/reply (v1)\n")},
		"docs/contract.md":     {Data: []byte("# Contract\n\n## Deploy progress (added in v1)\n\n```\n# not a heading\n```\n")},
		"schemas/schema.json":  {Data: []byte("{}")},
		"deploy/nats/conf.txt": {Data: []byte("")},
	}
	tests := []struct {
		name string
		page string // the text of docs/page.md
		want []string
	}{
		{"good links", strings.Join([]string{
			"[c](contract.md) [r](../README.md) [s](../schemas/) [j](../schemas/schema.json)",
			"[a](contract.md#deploy-progress-added-in-v1) [b](../README.md#running-it-1)",
			"[c](../README.md#http_addr-and-requestreply-v1) [self](#local-heading)",
			"[web](https://example.com/x.md) [mail](mailto:a@b.c) [root](/deploy/nats/conf.txt)",
			"[titled](contract.md \"the contract\") ![img](../schemas/schema.json)",
			"[ref]: contract.md#contract",
			"## Local heading",
		}, "\n"), nil},
		{"missing file", "[x](missing.md)", []string{
			`docs/page.md:1: link "missing.md": docs/missing.md does not exist`}},
		{"leaves the repository", "see [the contract](../../elsewhere/SPEC.md)", []string{
			`docs/page.md:1: link "../../elsewhere/SPEC.md" leaves the repository`}},
		{"missing anchor", "[x](contract.md#deploy-progress)", []string{
			`docs/page.md:1: link "contract.md#deploy-progress": docs/contract.md has no heading "deploy-progress"`}},
		{"missing local anchor", "# Page\n\n[x](#nowhere)", []string{
			`docs/page.md:3: link "#nowhere": docs/page.md has no heading "nowhere"`}},
		{"heading inside a code block", "[x](contract.md#not-a-heading)", []string{
			`docs/page.md:1: link "contract.md#not-a-heading": docs/contract.md has no heading "not-a-heading"`}},
		{"reference definition", "[ref]: ../nowhere/", []string{
			`docs/page.md:1: link "../nowhere/": nowhere does not exist`}},
		{"links in code are not links", "`[x](missing.md)`\n\n```\n[y](missing.md)\n```\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{"docs/page.md": {Data: []byte(tt.page)}}
			for k, v := range base {
				fsys[k] = v
			}
			got := checkLinks(fsys, []string{"docs/page.md"})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSlug(t *testing.T) {
	tests := map[string]string{
		"Deploy progress (added in v1)":           "deploy-progress-added-in-v1",
		"Request/reply":                           "requestreply",
		"Order, supersession and replays":         "order-supersession-and-replays",
		"`OPERATOR_BRIDGE_NATS_URL` and the rest": "operator_bridge_nats_url-and-the-rest",
		"[Linked](x.md) **bold** heading":         "linked-bold-heading",
		"Ünïcode héading":                         "ünïcode-héading",
	}
	for in, want := range tests {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}

// markdownFiles lists the repository's Markdown files, as git knows them
// (tracked, or new and not ignored); without git, every *.md outside hidden
// folders and bin/.
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "*.md").Output()
	if err == nil {
		var files []string
		for _, f := range strings.Split(string(out), "\x00") {
			if f == "" {
				continue
			}
			if _, err := os.Stat(path.Join(root, f)); err == nil { // deleted but not yet committed
				files = append(files, f)
			}
		}
		return files
	}
	t.Logf("git ls-files: %v; walking the tree instead", err)
	var files []string
	err = fs.WalkDir(os.DirFS(root), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != "." && (strings.HasPrefix(d.Name(), ".") || p == "bin") {
			return fs.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

var (
	// inlineLink matches [text](target) and ![alt](target), with an
	// optional title; target may be in angle brackets.
	inlineLink = regexp.MustCompile(`\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+"[^"]*")?\s*\)`)
	// refDefinition matches a reference definition: [label]: target
	refDefinition = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)`)
	codeSpan      = regexp.MustCompile("`+[^`]*`+")
	scheme        = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	atxHeading    = regexp.MustCompile(`^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)
)

// checkLinks returns a line for every relative link of files (paths in
// fsys, the repository) that does not resolve: a target that leaves the
// repository or does not exist, or an #anchor into a Markdown file that
// names none of its headings.
func checkLinks(fsys fs.FS, files []string) []string {
	var problems []string
	anchors := map[string]map[string]bool{} // Markdown file -> its heading slugs
	headings := func(file string) map[string]bool {
		if a, ok := anchors[file]; ok {
			return a
		}
		data, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil
		}
		a := headingSlugs(data)
		anchors[file] = a
		return a
	}
	for _, file := range files {
		data, err := fs.ReadFile(fsys, file)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", file, err))
			continue
		}
		forEachLine(data, func(n int, line string) {
			var targets []string
			if m := refDefinition.FindStringSubmatch(line); m != nil {
				targets = append(targets, m[1])
			}
			for _, m := range inlineLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, ""), -1) {
				targets = append(targets, m[1])
			}
			for _, target := range targets {
				if p := checkLink(fsys, file, strings.Trim(target, "<>"), headings); p != "" {
					problems = append(problems, fmt.Sprintf("%s:%d: link %q%s", file, n, target, p))
				}
			}
		})
	}
	return problems
}

// checkLink says what is wrong with one link target of file ("" if nothing).
func checkLink(fsys fs.FS, file, target string, headings func(string) map[string]bool) string {
	if target == "" || scheme.MatchString(target) || strings.HasPrefix(target, "//") {
		return "" // not relative: another site, mailto:, ...
	}
	ref, frag, _ := strings.Cut(target, "#")
	if p, err := url.PathUnescape(ref); err == nil {
		ref = p
	}
	dest := file
	if ref != "" {
		if strings.HasPrefix(ref, "/") {
			dest = path.Clean(strings.TrimPrefix(ref, "/"))
		} else {
			dest = path.Join(path.Dir(file), ref)
		}
		if dest == ".." || strings.HasPrefix(dest, "../") {
			return " leaves the repository"
		}
		if _, err := fs.Stat(fsys, dest); err != nil {
			return fmt.Sprintf(": %s does not exist", dest)
		}
	}
	if frag == "" || !strings.HasSuffix(dest, ".md") {
		return ""
	}
	if !headings(dest)[strings.ToLower(frag)] {
		return fmt.Sprintf(": %s has no heading %q", dest, frag)
	}
	return ""
}

// forEachLine calls f with each line of a Markdown text outside fenced
// code blocks, numbered from 1.
func forEachLine(data []byte, f func(n int, line string)) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	fence := ""
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			for _, c := range trimmed[3:] {
				if c != rune(fence[0]) {
					break
				}
				fence += fence[:1]
			}
			continue
		}
		f(n, line)
	}
}

// headingSlugs returns the anchors GitHub gives the headings of a Markdown
// text: the slug of each, a repeated slug getting -1, -2, ...
func headingSlugs(data []byte) map[string]bool {
	slugs := map[string]bool{}
	count := map[string]int{}
	forEachLine(data, func(_ int, line string) {
		m := atxHeading.FindStringSubmatch(line)
		if m == nil {
			return
		}
		s := slug(m[2])
		if n := count[s]; n > 0 {
			slugs[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			slugs[s] = true
		}
		count[s]++
	})
	return slugs
}

var linkText = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)

// slug is GitHub's anchor of a heading: its text without Markdown links and
// emphasis, lower case, with every character other than a letter, a digit,
// '_', '-' or a space left out and the spaces made '-'.
func slug(heading string) string {
	text := linkText.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
