#![allow(dead_code)]

//! Renders the Helm chart for the tests, without `helm` (not among Debian's packages).
//!
//! It implements the part of Go's `text/template` and Helm's functions the chart uses, with
//! the same semantics: actions `{{ }}` with `{{-`/`-}}` whitespace trimming and comments;
//! `define`, `if`/`else`, `with`/`else`, `end`; pipelines of fields (`.Values.a.b`, `.`, `$`),
//! string, number and boolean literals, parenthesised pipelines; functions `include`,
//! `default`, `quote`, `toYaml`, `nindent`, `indent`, `trunc`, `trimSuffix`, `sha256sum`,
//! `required`, `replace`, `printf` (`%s` only) and `.Files.Get` (files of the chart). Anything else in a
//! template is an error, and so is printing a value that does not exist — stricter than Helm,
//! so a typo in a template or a values key fails the tests instead of rendering nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use sha2::Digest;

/// The release being rendered.
pub struct Release<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
}

/// One rendered template file: its path under `templates/` and its YAML documents.
pub struct Rendered {
    pub file: String,
    pub documents: Vec<Value>,
}

/// Renders every manifest template of the chart in `dir` with its `values.yaml` overlaid by
/// `overrides` (merged key by key, as `helm --set`/`-f` do).
pub fn render(dir: &Path, release: &Release, overrides: Value) -> Result<Vec<Rendered>, String> {
    let chart: Value = read_yaml(&dir.join("Chart.yaml"))?;
    let mut values: Value = read_yaml(&dir.join("values.yaml"))?;
    merge(&mut values, overrides);
    let root = json!({
        "Values": values,
        "Release": {"Name": release.name, "Namespace": release.namespace, "Service": "Helm"},
        "Chart": {
            "Name": chart["name"],
            "Version": chart["version"],
            "AppVersion": chart["appVersion"],
        },
    });

    let mut files: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(dir.join("templates")).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        files.push((name, text));
    }
    files.sort();

    // Every file is parsed, so `define`s in `_helpers.tpl` are known to all.
    let mut engine = Engine {
        chart_dir: dir.to_path_buf(),
        ..Engine::default()
    };
    let mut bodies = Vec::new();
    for (name, text) in &files {
        let nodes = engine
            .parse(text)
            .map_err(|e| format!("templates/{name}: {e}"))?;
        bodies.push((name.clone(), nodes));
    }

    let mut out = Vec::new();
    for (name, nodes) in bodies {
        if name.starts_with('_') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        let text = engine
            .render(&nodes, &root, &root)
            .map_err(|e| format!("templates/{name}: {e}"))?;
        let documents = split_documents(&text)
            .map_err(|e| format!("templates/{name} rendered invalid YAML: {e}\n{text}"))?;
        out.push(Rendered {
            file: name,
            documents,
        });
    }
    Ok(out)
}

/// The YAML documents of a multi-document stream, skipping empty ones.
pub fn split_documents(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut flush = |current: &mut String| -> Result<(), String> {
        let meaningful = current
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if meaningful {
            docs.push(serde_saphyr::from_str::<Value>(current).map_err(|e| e.to_string())?);
        }
        current.clear();
        Ok(())
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut current)?;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&mut current)?;
    Ok(docs)
}

fn read_yaml(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (k, v) in over {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, over) => *base = over,
    }
}

// ---------------------------------------------------------------------------------------------
// Lexing: text and actions
// ---------------------------------------------------------------------------------------------

enum Token {
    Text(String),
    Action(String),
}

fn lex(src: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_before = after.starts_with("- ") || after.starts_with("-\n");
        if trim_before {
            text = text.trim_end();
        }
        if !text.is_empty() {
            tokens.push(Token::Text(text.to_owned()));
        }
        let close = after
            .find("}}")
            .ok_or_else(|| format!("unclosed action near {:?}", &after[..after.len().min(40)]))?;
        let mut inner = &after[..close];
        if trim_before {
            inner = &inner[1..];
        }
        trim_next = inner.ends_with(" -") || inner.ends_with("\n-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            tokens.push(Token::Action(inner.to_owned()));
        }
        rest = &after[close + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        tokens.push(Token::Text(text.to_owned()));
    }
    Ok(tokens)
}

// ---------------------------------------------------------------------------------------------
// Parsing: a tree of text, outputs and blocks
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Arg {
    Field { from_root: bool, path: Vec<String> },
    Literal(Value),
    Function(String),
    Pipeline(Pipeline),
}

type Command = Vec<Arg>;
type Pipeline = Vec<Command>;

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Output(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

enum Stop {
    End,
    Else,
    Eof,
}

#[derive(Default)]
struct Engine {
    defines: BTreeMap<String, Vec<Node>>,
    /// Where `.Files.Get` reads from.
    chart_dir: std::path::PathBuf,
}

impl Engine {
    fn parse(&mut self, src: &str) -> Result<Vec<Node>, String> {
        let tokens = lex(src)?;
        let mut i = 0;
        let (nodes, stop) = self.parse_until(&tokens, &mut i)?;
        match stop {
            Stop::Eof => Ok(nodes),
            Stop::End => Err("`end` without a block".into()),
            Stop::Else => Err("`else` without a block".into()),
        }
    }

    fn parse_until(
        &mut self,
        tokens: &[Token],
        i: &mut usize,
    ) -> Result<(Vec<Node>, Stop), String> {
        let mut nodes = Vec::new();
        while *i < tokens.len() {
            let token = &tokens[*i];
            *i += 1;
            let action = match token {
                Token::Text(t) => {
                    nodes.push(Node::Text(t.clone()));
                    continue;
                }
                Token::Action(a) => a.as_str(),
            };
            let (keyword, rest) = action
                .split_once(char::is_whitespace)
                .unwrap_or((action, ""));
            match keyword {
                "end" => return Ok((nodes, Stop::End)),
                "else" if rest.trim().is_empty() => return Ok((nodes, Stop::Else)),
                "define" => {
                    let name = unquote(rest.trim())?;
                    let (body, stop) = self.parse_until(tokens, i)?;
                    if !matches!(stop, Stop::End) {
                        return Err(format!("define {name:?} is not closed by `end`"));
                    }
                    self.defines.insert(name, body);
                }
                "if" | "with" => {
                    let pipeline = parse_pipeline(rest)?;
                    let (then, stop) = self.parse_until(tokens, i)?;
                    let otherwise = match stop {
                        Stop::End => Vec::new(),
                        Stop::Else => {
                            let (otherwise, stop) = self.parse_until(tokens, i)?;
                            if !matches!(stop, Stop::End) {
                                return Err(format!("`{keyword}` block is not closed by `end`"));
                            }
                            otherwise
                        }
                        Stop::Eof => return Err(format!("`{keyword}` block is not closed")),
                    };
                    nodes.push(if keyword == "if" {
                        Node::If(pipeline, then, otherwise)
                    } else {
                        Node::With(pipeline, then, otherwise)
                    });
                }
                "range" | "else" | "block" | "template" | "break" | "continue" => {
                    return Err(format!("`{action}` is not supported by the test renderer"))
                }
                _ => nodes.push(Node::Output(parse_pipeline(action)?)),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    // -----------------------------------------------------------------------------------------
    // Evaluation
    // -----------------------------------------------------------------------------------------

    fn render(&self, nodes: &[Node], dot: &Value, root: &Value) -> Result<String, String> {
        let mut out = String::new();
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Output(p) => {
                    let value = self.eval(p, dot, root)?;
                    out.push_str(
                        &text_of(&value).map_err(|e| format!("{{{{ {} }}}}: {e}", show(p)))?,
                    );
                }
                Node::If(p, then, otherwise) => {
                    let branch = if truthy(&self.eval(p, dot, root)?) {
                        then
                    } else {
                        otherwise
                    };
                    out.push_str(&self.render(branch, dot, root)?);
                }
                Node::With(p, then, otherwise) => {
                    let value = self.eval(p, dot, root)?;
                    if truthy(&value) {
                        out.push_str(&self.render(then, &value, root)?);
                    } else {
                        out.push_str(&self.render(otherwise, dot, root)?);
                    }
                }
            }
        }
        Ok(out)
    }

    fn eval(&self, pipeline: &Pipeline, dot: &Value, root: &Value) -> Result<Value, String> {
        let mut piped: Option<Value> = None;
        for command in pipeline {
            let value = match &command[0] {
                Arg::Function(name) => {
                    let mut args = command[1..]
                        .iter()
                        .map(|a| self.arg(a, dot, root))
                        .collect::<Result<Vec<_>, _>>()?;
                    args.extend(piped.take());
                    self.call(name, args, root)?
                }
                single => {
                    if command.len() > 1 || piped.is_some() {
                        return Err(format!("cannot call a value: {}", show(pipeline)));
                    }
                    self.arg(single, dot, root)?
                }
            };
            piped = Some(value);
        }
        Ok(piped.unwrap_or(Value::Null))
    }

    fn arg(&self, arg: &Arg, dot: &Value, root: &Value) -> Result<Value, String> {
        match arg {
            Arg::Literal(v) => Ok(v.clone()),
            Arg::Field { from_root, path } => {
                let mut v = if *from_root { root } else { dot };
                for key in path {
                    v = v.get(key).unwrap_or(&Value::Null);
                }
                Ok(v.clone())
            }
            Arg::Function(name) => self.call(name, Vec::new(), root),
            Arg::Pipeline(p) => self.eval(p, dot, root),
        }
    }

    fn call(&self, name: &str, args: Vec<Value>, root: &Value) -> Result<Value, String> {
        let want = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!("{name} takes {n} arguments, got {}", args.len()))
            }
        };
        let int = |v: &Value| {
            v.as_u64()
                .map(|n| n as usize)
                .ok_or(format!("{name}: {v} is not a number"))
        };
        match name {
            "include" => {
                want(2)?;
                let template = args[0]
                    .as_str()
                    .ok_or("include: the name is not a string")?;
                let body = self
                    .defines
                    .get(template)
                    .ok_or(format!("include: no template {template:?}"))?;
                Ok(Value::String(self.render(body, &args[1], root)?))
            }
            "default" => {
                want(2)?;
                Ok(if truthy(&args[1]) {
                    args[1].clone()
                } else {
                    args[0].clone()
                })
            }
            "required" => {
                want(2)?;
                if truthy(&args[1]) {
                    Ok(args[1].clone())
                } else {
                    Err(format!("required: {}", text_of(&args[0])?))
                }
            }
            "quote" => {
                want(1)?;
                Ok(Value::String(
                    serde_json::to_string(&Value::String(text_of(&args[0])?)).unwrap(),
                ))
            }
            "toYaml" => {
                want(1)?;
                let yaml = serde_saphyr::to_string(&args[0]).map_err(|e| e.to_string())?;
                Ok(Value::String(yaml.trim_end_matches('\n').to_owned()))
            }
            "indent" | "nindent" => {
                want(2)?;
                let pad = " ".repeat(int(&args[0])?);
                let body = text_of(&args[1])?;
                let indented: Vec<String> = body.split('\n').map(|l| format!("{pad}{l}")).collect();
                let joined = indented.join("\n");
                Ok(Value::String(if name == "nindent" {
                    format!("\n{joined}")
                } else {
                    joined
                }))
            }
            "trunc" => {
                want(2)?;
                Ok(Value::String(
                    text_of(&args[1])?.chars().take(int(&args[0])?).collect(),
                ))
            }
            "trimSuffix" => {
                want(2)?;
                let suffix = text_of(&args[0])?;
                let s = text_of(&args[1])?;
                Ok(Value::String(
                    s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_owned(),
                ))
            }
            "sha256sum" => {
                want(1)?;
                let digest = sha2::Sha256::digest(text_of(&args[0])?.as_bytes());
                Ok(Value::String(
                    digest.iter().map(|b| format!("{b:02x}")).collect(),
                ))
            }
            "replace" => {
                want(3)?;
                let (old, new) = (text_of(&args[0])?, text_of(&args[1])?);
                Ok(Value::String(text_of(&args[2])?.replace(&old, &new)))
            }
            "printf" => {
                let format = text_of(args.first().ok_or("printf takes a format")?)?;
                let mut parts = format.split("%s");
                let mut out = parts.next().unwrap_or_default().to_owned();
                let mut rest = args[1..].iter();
                for part in parts {
                    let arg = rest.next().ok_or("printf: too few arguments")?;
                    out.push_str(&text_of(arg)?);
                    out.push_str(part);
                }
                Ok(Value::String(out))
            }
            "Files.Get" => {
                want(1)?;
                let path = self.chart_dir.join(text_of(&args[0])?);
                // Helm gives an empty string for a missing file; a test wants to know.
                std::fs::read_to_string(&path)
                    .map(Value::String)
                    .map_err(|e| format!(".Files.Get {}: {e}", path.display()))
            }
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "nil" => Ok(Value::Null),
            _ => Err(format!(
                "function {name:?} is not supported by the test renderer"
            )),
        }
    }
}

fn parse_pipeline(src: &str) -> Result<Pipeline, String> {
    let words = split_words(src)?;
    let mut pipeline = vec![Vec::new()];
    for word in words {
        if word == "|" {
            pipeline.push(Vec::new());
            continue;
        }
        let arg = if let Some(inner) = word.strip_prefix('(') {
            Arg::Pipeline(parse_pipeline(
                inner.strip_suffix(')').ok_or("unbalanced (")?,
            )?)
        } else if word == ".Files.Get" {
            Arg::Function("Files.Get".to_owned())
        } else if word.starts_with('"') {
            Arg::Literal(Value::String(unquote(&word)?))
        } else if word == "." {
            Arg::Field {
                from_root: false,
                path: vec![],
            }
        } else if word == "$" {
            Arg::Field {
                from_root: true,
                path: vec![],
            }
        } else if let Some(path) = word.strip_prefix("$.") {
            Arg::Field {
                from_root: true,
                path: path.split('.').map(str::to_owned).collect(),
            }
        } else if let Some(path) = word.strip_prefix('.') {
            Arg::Field {
                from_root: false,
                path: path.split('.').map(str::to_owned).collect(),
            }
        } else if let Ok(n) = word.parse::<i64>() {
            Arg::Literal(json!(n))
        } else if word.chars().all(|c| c.is_ascii_alphanumeric()) {
            Arg::Function(word)
        } else {
            return Err(format!("cannot read {word:?} in {src:?}"));
        };
        pipeline.last_mut().unwrap().push(arg);
    }
    if pipeline.iter().any(Vec::is_empty) {
        return Err(format!("empty command in {src:?}"));
    }
    Ok(pipeline)
}

/// Words separated by white space; quoted strings stay whole; `|` is a word of its own.
fn split_words(src: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' {
            chars.next();
            words.push("|".to_owned());
        } else if c == '"' {
            let mut word = String::from(chars.next().unwrap());
            loop {
                let c = chars
                    .next()
                    .ok_or(format!("unterminated string in {src:?}"))?;
                word.push(c);
                if c == '\\' {
                    word.push(chars.next().ok_or("dangling escape")?);
                } else if c == '"' {
                    break;
                }
            }
            words.push(word);
        } else if c == '(' {
            // A parenthesised pipeline, kept whole (strings in it may hold parentheses).
            let mut word = String::new();
            let (mut depth, mut quoted) = (0, false);
            for c in chars.by_ref() {
                word.push(c);
                match c {
                    '"' => quoted = !quoted,
                    '(' if !quoted => depth += 1,
                    ')' if !quoted => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
            if depth != 0 {
                return Err(format!("unbalanced parentheses in {src:?}"));
            }
            words.push(word);
        } else if c == ')' {
            return Err(format!("unbalanced parentheses in {src:?}"));
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '|' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            words.push(word);
        }
    }
    Ok(words)
}

fn unquote(word: &str) -> Result<String, String> {
    serde_json::from_str::<String>(word).map_err(|_| format!("{word} is not a quoted string"))
}

/// Go's truth: false, 0, nil and empty strings, lists and maps are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// How a value prints into a template; printing nothing is an error here.
fn text_of(v: &Value) -> Result<String, String> {
    match v {
        Value::Null => Err("the value does not exist (a typo in the template or values?)".into()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(_) | Value::Object(_) => Err(format!("{v} is not a scalar; use toYaml")),
    }
}

fn show(p: &Pipeline) -> String {
    format!("{p:?}")
}
