//! A Jenkins-shaped runner for the Jenkinsfile: it reads the pipeline from the file (never a
//! copy of its stage list), evaluates `parameters`, `environment` and `when` as Jenkins would
//! for a build's variables, and runs each selected stage's `runStage` scripts in order in a
//! workspace, with `options { timeout }` as the bound, `credentials()` from the build's store,
//! `input` answered by the scenario, and the `post` sections (`failure`, `success`, `always`).
//! A construct it does not know fails the run: a changed Jenkinsfile cannot be half-run.

use super::groovy::{self, Arg, Expr, Stmt, V};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a build is started with.
#[derive(Default, Clone)]
pub struct Build {
    /// Jenkins' own variables (BRANCH_NAME, GIT_COMMIT, BUILD_TAG, WORKSPACE, …).
    pub env: BTreeMap<String, String>,
    /// Build parameters given (the rest take the Jenkinsfile's defaults).
    pub params: BTreeMap<String, String>,
    /// Credentials store: id → secret.
    pub credentials: BTreeMap<String, String>,
    /// Who started it (a user cause), or None for the timer.
    pub started_by: Option<String>,
    /// Answers to `input` steps, in order (the approver's user id).
    pub approvals: Vec<String>,
    /// Variables every stage script gets last: the harness's own (the suite's build as BIN,
    /// shorter holds); documented in the test.
    pub overrides: BTreeMap<String, String>,
    /// The paths the build's new commits change (`currentBuild.changeSets`: one change set,
    /// one entry holding them; none when empty, as on a first build).
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// Skipped after an earlier failure (Jenkins: "skipped due to earlier failure(s)").
    NotRun,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// Every stage whose `when` held, by path (`Production blue-green / Cutover`), in order.
    pub stages: Vec<(String, Verdict)>,
    /// Every stage script run, with its arguments (`notify.sh failure '…'`) and exit code.
    pub scripts: Vec<(String, i32)>,
    /// Shell steps the harness does not run (the build and the test suite it is part of).
    pub not_run: Vec<String>,
    pub locks: Vec<String>,
    pub failed: bool,
    pub log: String,
}

impl Outcome {
    pub fn verdict(&self, stage_suffix: &str) -> Option<&Verdict> {
        self.stages
            .iter()
            .find(|(n, _)| n.ends_with(stage_suffix))
            .map(|(_, v)| v)
    }
    pub fn ran(&self, script_prefix: &str) -> Vec<&(String, i32)> {
        self.scripts
            .iter()
            .filter(|(s, _)| s.starts_with(script_prefix))
            .collect()
    }
}

type Hook<'a> = Box<dyn FnMut(&str) + 'a>;

pub struct Runner<'a> {
    pub workspace: PathBuf,
    pub build: Build,
    /// The build's environment: Jenkins' variables, the pipeline's `environment`, `env.X = …`.
    env: BTreeMap<String, String>,
    /// Each running stage's `environment` (innermost last): over the build's, for that stage only.
    layers: Vec<BTreeMap<String, String>>,
    params: BTreeMap<String, V>,
    vars: Vec<BTreeMap<String, V>>,
    functions: BTreeMap<String, (Vec<String>, Vec<Stmt>)>,
    timeouts: Vec<Duration>,
    approvals: std::collections::VecDeque<String>,
    /// Called with a stage's path before it runs, and with "post failure" before that section.
    hook: Option<Hook<'a>>,
    out: Outcome,
}

#[derive(Debug)]
enum Flow {
    Failed(String),
}

type R<T> = Result<T, Flow>;

fn lit(e: &Expr) -> Option<String> {
    match e {
        Expr::Str(s) => Some(groovy::unescape(s)),
        _ => None,
    }
}

fn named<'b>(args: &'b [Arg], name: &str) -> Option<&'b Expr> {
    args.iter().find_map(|a| match a {
        Arg::Named(n, e) if n == name => Some(e),
        _ => None,
    })
}

fn positional(args: &[Arg]) -> Vec<&Expr> {
    args.iter()
        .filter_map(|a| match a {
            Arg::Pos(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// The pipeline's top-level stages: name and block.
pub fn top_stages(file: &[Stmt]) -> Vec<(String, &[Stmt])> {
    let pipeline = groovy::section(file, "pipeline").expect("a pipeline { } section");
    let stages = groovy::section(pipeline, "stages").expect("pipeline { stages { } }");
    groovy::sections(stages, "stage")
        .into_iter()
        .map(|(a, b)| (lit(positional(a)[0]).expect("stage('literal name')"), b))
        .collect()
}

impl<'a> Runner<'a> {
    pub fn new(workspace: &Path, build: Build) -> Runner<'a> {
        Runner {
            workspace: workspace.to_path_buf(),
            approvals: build.approvals.clone().into(),
            env: build.env.clone(),
            layers: vec![],
            build,
            params: BTreeMap::new(),
            vars: vec![BTreeMap::new()],
            functions: BTreeMap::new(),
            timeouts: vec![Duration::from_secs(4 * 3600)],
            hook: None,
            out: Outcome::default(),
        }
    }

    pub fn on_stage(mut self, hook: impl FnMut(&str) + 'a) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// Run the whole Jenkinsfile for this build.
    pub fn run(mut self, jenkinsfile: &str) -> Outcome {
        let file = groovy::parse(jenkinsfile).expect("the Jenkinsfile parses");
        for s in &file {
            if let Stmt::FnDef(n, p, b) = s {
                self.functions.insert(n.clone(), (p.clone(), b.clone()));
            }
        }
        let pipeline = groovy::section(&file, "pipeline").expect("a pipeline { } section");
        if let Some(p) = groovy::section(pipeline, "parameters") {
            self.parameters(p);
        }
        if let Some(opts) = groovy::section(pipeline, "options") {
            self.options(opts);
        }
        if let Some(e) = groovy::section(pipeline, "environment") {
            self.layers.push(BTreeMap::new());
            self.environment(e).expect("pipeline environment");
            let top = self.layers.pop().unwrap();
            self.env.extend(top);
        }
        for (name, block) in top_stages(&file) {
            self.stage(&name, block);
        }
        if let Some(post) = groovy::section(pipeline, "post") {
            let failed = self.out.failed;
            self.post(post, "pipeline", failed);
        }
        self.out
    }

    fn parameters(&mut self, p: &[Stmt]) {
        for s in p {
            let Stmt::Expr(Expr::Call(None, kind, args, _, _)) = s else {
                panic!("parameters: {s:?}")
            };
            let name = lit(named(args, "name").expect("name:")).unwrap();
            let default = match kind.as_str() {
                "choice" => match named(args, "choices") {
                    Some(Expr::List(l)) => V::Str(lit(&l[0]).unwrap()),
                    o => panic!("choices: {o:?}"),
                },
                "string" => V::Str(lit(named(args, "defaultValue").unwrap()).unwrap()),
                "booleanParam" => match named(args, "defaultValue") {
                    Some(Expr::Bool(b)) => V::Bool(*b),
                    o => panic!("booleanParam default: {o:?}"),
                },
                k => panic!("the harness does not know parameter kind {k}"),
            };
            if let Some(given) = self.build.params.get(&name) {
                let v = match default {
                    V::Bool(_) => V::Bool(given == "true"),
                    _ => V::Str(given.clone()),
                };
                self.params.insert(name, v);
            } else {
                self.params.insert(name, default);
            }
        }
        for k in self.build.params.keys() {
            assert!(
                self.params.contains_key(k),
                "the build passes parameter {k}, which the Jenkinsfile does not declare"
            );
        }
    }

    fn options(&mut self, opts: &[Stmt]) -> Option<Duration> {
        let mut t = None;
        for s in opts {
            match s {
                Stmt::Expr(Expr::Call(None, n, args, _, _)) if n == "lock" => {
                    let l = lit(positional(args)[0]).expect("lock('literal')");
                    self.out.locks.push(l);
                }
                Stmt::Expr(Expr::Call(None, n, args, _, _)) if n == "timeout" => {
                    let Some(Expr::Num(time)) = named(args, "time") else {
                        panic!("timeout(time: N)")
                    };
                    let unit = lit(named(args, "unit").unwrap()).unwrap();
                    let secs = match unit.as_str() {
                        "MINUTES" => 60,
                        "HOURS" => 3600,
                        "SECONDS" => 1,
                        u => panic!("timeout unit {u}"),
                    };
                    t = Some(Duration::from_secs(*time as u64 * secs));
                }
                _ => {} // timestamps(), buildDiscarder(…), disableConcurrentBuilds(…)
            }
        }
        t
    }

    fn environment(&mut self, e: &[Stmt]) -> R<()> {
        for s in e {
            let Stmt::Assign(target, value) = s else {
                panic!("environment: {s:?}")
            };
            let v = self.eval(value)?;
            self.layers
                .last_mut()
                .expect("an environment layer")
                .insert(target.join("."), v.text());
        }
        Ok(())
    }

    fn env_get(&self, k: &str) -> Option<&String> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.get(k))
            .or_else(|| self.env.get(k))
    }

    /// What a step's process gets: the build's environment under the stages' layers.
    fn env_all(&self) -> BTreeMap<String, String> {
        let mut all = self.env.clone();
        for l in &self.layers {
            all.extend(l.clone());
        }
        all
    }

    fn stage(&mut self, path: &str, block: &[Stmt]) {
        if let Some(w) = groovy::section(block, "when") {
            let e = groovy::section(w, "expression").expect("when { expression { … } }");
            let [Stmt::Expr(cond)] = e else {
                panic!("when expression: {e:?}")
            };
            if !self.eval(cond).expect("when").truthy() {
                return;
            }
        }
        if self.out.failed {
            self.out.stages.push((path.to_string(), Verdict::NotRun));
            return;
        }
        if let Some(h) = self.hook.as_mut() {
            h(path);
        }
        self.layers.push(BTreeMap::new());
        let mut pushed = false;
        if let Some(o) = groovy::section(block, "options")
            && let Some(t) = self.options(o)
        {
            let bound = t.min(*self.timeouts.last().unwrap());
            self.timeouts.push(bound);
            pushed = true;
        }
        let result = (|| -> R<()> {
            if let Some(e) = groovy::section(block, "environment") {
                self.environment(e)?;
            }
            Ok(())
        })();
        let result = result.and_then(|_| {
            if let Some(children) = groovy::section(block, "stages") {
                let before = self.out.failed;
                for (a, b) in groovy::sections(children, "stage") {
                    let name = lit(positional(a)[0]).unwrap();
                    self.stage(&format!("{path} / {name}"), b);
                }
                if self.out.failed && !before {
                    return Err(Flow::Failed("a nested stage failed".into()));
                }
                Ok(())
            } else {
                let steps = groovy::section(block, "steps").expect("stage has steps or stages");
                self.block(steps)
            }
        });
        let failed_here = result.is_err();
        match &result {
            Ok(()) => self.out.stages.push((path.to_string(), Verdict::Pass)),
            Err(Flow::Failed(why)) => {
                let nested = format!("{path} / ");
                if !self.out.stages.iter().any(|(p, _)| p.starts_with(&nested)) {
                    self.out
                        .stages
                        .push((path.to_string(), Verdict::Fail(why.clone())));
                } else {
                    self.out
                        .stages
                        .push((path.to_string(), Verdict::Fail("nested".into())));
                }
                self.out.failed = true;
            }
        }
        if let Some(post) = groovy::section(block, "post") {
            self.post(post, path, failed_here);
        }
        if pushed {
            self.timeouts.pop();
        }
        self.layers.pop();
    }

    fn post(&mut self, post: &[Stmt], path: &str, failed: bool) {
        for (cond, run) in [("always", true), ("failure", failed), ("success", !failed)] {
            if !run {
                continue;
            }
            if let Some(b) = groovy::section(post, cond) {
                if let Some(h) = self.hook.as_mut() {
                    h(&format!("{path} post {cond}"));
                }
                if let Err(Flow::Failed(why)) = self.block(b) {
                    self.out.log += &format!("post {cond} of {path} failed: {why}\n");
                    self.out.failed = true;
                }
            }
        }
    }

    fn block(&mut self, stmts: &[Stmt]) -> R<()> {
        for s in stmts {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn set_var(&mut self, name: &str, v: V) {
        for scope in self.vars.iter_mut().rev() {
            if scope.contains_key(name) {
                scope.insert(name.to_string(), v);
                return;
            }
        }
        self.vars.last_mut().unwrap().insert(name.to_string(), v);
    }

    fn stmt(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::Expr(e) => {
                self.eval(e)?;
            }
            Stmt::Assign(t, e) => {
                let v = self.eval(e)?;
                match t.as_slice() {
                    [env, k] if env == "env" => {
                        self.env.insert(k.clone(), v.text());
                    }
                    [name] => self.set_var(name, v),
                    o => panic!("assignment to {o:?}"),
                }
            }
            Stmt::Try(body, catch, fin) => {
                let r = self.block(body);
                let r = match (r, catch) {
                    (Err(Flow::Failed(why)), Some((var, cb))) => {
                        self.set_var(var, V::Str(why));
                        self.block(cb)
                    }
                    (r, _) => r,
                };
                self.block(fin)?;
                r?;
            }
            Stmt::If(c, t, e) => {
                if self.eval(c)?.truthy() {
                    self.block(t)?
                } else {
                    self.block(e)?
                }
            }
            Stmt::While(c, b) => {
                let mut n = 0;
                while self.eval(c)?.truthy() {
                    n += 1;
                    assert!(n < 100, "a while loop of the Jenkinsfile ran 100 times");
                    self.block(b)?;
                }
            }
            Stmt::For(var, over, b) => {
                let V::List(items) = self.eval(over)? else {
                    panic!("for over a non-list")
                };
                for it in items {
                    self.set_var(var, it);
                    self.block(b)?;
                }
            }
            Stmt::FnDef(..) => panic!("a function defined inside a block"),
        }
        Ok(())
    }

    fn eval(&mut self, e: &Expr) -> R<V> {
        Ok(match e {
            Expr::Str(s) => V::Str(groovy::unescape(s)),
            Expr::GStr(s) => {
                let mut out = String::new();
                for part in groovy::gstring_parts(s).expect("GString") {
                    match part {
                        Ok(t) => out += &t,
                        Err(x) => out += &self.eval(&x)?.text(),
                    }
                }
                V::Str(out)
            }
            Expr::Num(n) => V::Num(*n),
            Expr::Bool(b) => V::Bool(*b),
            Expr::Null => V::Null,
            Expr::Var(n) => {
                if let Some(v) = self.vars.iter().rev().find_map(|s| s.get(n)) {
                    v.clone()
                } else {
                    match n.as_str() {
                        "env" | "params" | "currentBuild" => V::Str(format!("<{n}>")),
                        _ => panic!("unknown variable {n}"),
                    }
                }
            }
            Expr::Prop(recv, name, safe) => {
                if let Expr::Var(r) = &**recv {
                    match r.as_str() {
                        "env" => {
                            return Ok(self
                                .env_get(name)
                                .map(|v| V::Str(v.clone()))
                                .unwrap_or(V::Null));
                        }
                        "params" => {
                            return Ok(self
                                .params
                                .get(name)
                                .cloned()
                                .unwrap_or_else(|| panic!("no parameter {name}")));
                        }
                        // RunWithSCM.getChangeSets(): ChangeLogSet.getItems(), Entry.getAffectedPaths().
                        "currentBuild" if name == "changeSets" => {
                            let paths: Vec<V> = self
                                .build
                                .changed
                                .iter()
                                .map(|p| V::Str(p.clone()))
                                .collect();
                            if paths.is_empty() {
                                return Ok(V::List(vec![]));
                            }
                            let entry = V::Map(BTreeMap::from([(
                                "affectedPaths".to_string(),
                                V::List(paths),
                            )]));
                            return Ok(V::List(vec![V::Map(BTreeMap::from([(
                                "items".to_string(),
                                V::List(vec![entry]),
                            )]))]));
                        }
                        _ => {}
                    }
                }
                match self.eval(recv)? {
                    V::Null if *safe => V::Null,
                    V::Map(m) => m.get(name).cloned().unwrap_or(V::Null),
                    o => panic!("property {name} of {o:?}"),
                }
            }
            Expr::List(items) => {
                V::List(items.iter().map(|i| self.eval(i)).collect::<R<Vec<_>>>()?)
            }
            Expr::Map(kv) => {
                let mut m = BTreeMap::new();
                for (k, v) in kv {
                    m.insert(k.clone(), self.eval(v)?);
                }
                V::Map(m)
            }
            Expr::Not(x) => V::Bool(!self.eval(x)?.truthy()),
            Expr::Elvis(a, b) => {
                let v = self.eval(a)?;
                if v.truthy() { v } else { self.eval(b)? }
            }
            Expr::Cond(c, a, b) => {
                if self.eval(c)?.truthy() {
                    self.eval(a)?
                } else {
                    self.eval(b)?
                }
            }
            Expr::Bin(a, op, b) => match *op {
                "&&" => V::Bool(self.eval(a)?.truthy() && self.eval(b)?.truthy()),
                "||" => V::Bool(self.eval(a)?.truthy() || self.eval(b)?.truthy()),
                "==" => V::Bool(self.eval(a)? == self.eval(b)?),
                "!=" => V::Bool(self.eval(a)? != self.eval(b)?),
                "<" => match (self.eval(a)?, self.eval(b)?) {
                    (V::Num(x), V::Num(y)) => V::Bool(x < y),
                    o => panic!("< on {o:?}"),
                },
                "+" => V::Str(self.eval(a)?.text() + &self.eval(b)?.text()),
                "<<" => {
                    let item = self.eval(b)?;
                    let Expr::Var(name) = &**a else {
                        panic!("<< to a non-variable")
                    };
                    let V::List(mut l) = self.eval(a)? else {
                        panic!("<< to a non-list")
                    };
                    l.push(item);
                    self.set_var(name, V::List(l.clone()));
                    V::List(l)
                }
                o => panic!("operator {o}"),
            },
            Expr::Closure(_) => panic!("a bare closure"),
            Expr::Call(Some(recv), m, args, block, safe) => {
                if let Expr::Var(r) = &**recv
                    && r == "currentBuild"
                    && m == "getBuildCauses"
                {
                    let class = lit(positional(args)[0]).unwrap();
                    return Ok(self.causes(&class));
                }
                let v = self.eval(recv)?;
                if v == V::Null && *safe {
                    return Ok(V::Null);
                }
                let arg0 = match positional(args).first() {
                    Some(a) => Some(self.eval(a)?),
                    None => None,
                };
                match (m.as_str(), &v) {
                    ("trim", V::Str(s)) => V::Str(s.trim().to_string()),
                    ("startsWith", V::Str(s)) => V::Bool(s.starts_with(&arg0.unwrap().text())),
                    ("take", V::Str(s)) => {
                        let V::Num(n) = arg0.unwrap() else { panic!() };
                        V::Str(s.chars().take(n as usize).collect())
                    }
                    ("size", V::List(l)) => V::Num(l.len() as i64),
                    ("tokenize", V::Str(s)) => {
                        V::List(s.split_whitespace().map(|w| V::Str(w.into())).collect())
                    }
                    ("flatten", V::List(l)) => {
                        fn flat(l: &[V], out: &mut Vec<V>) {
                            for v in l {
                                match v {
                                    V::List(inner) => flat(inner, out),
                                    o => out.push(o.clone()),
                                }
                            }
                        }
                        let mut out = vec![];
                        flat(l, &mut out);
                        V::List(out)
                    }
                    ("contains", V::List(l)) => V::Bool(l.contains(&arg0.unwrap())),
                    ("join", V::List(l)) => V::Str(
                        l.iter()
                            .map(V::text)
                            .collect::<Vec<_>>()
                            .join(&arg0.unwrap().text()),
                    ),
                    ("collect", V::List(l)) | ("find", V::List(l)) | ("every", V::List(l)) => {
                        let body = block.as_ref().expect("a closure");
                        let [Stmt::Expr(x)] = body.as_slice() else {
                            panic!("closure of one expression")
                        };
                        let mut out = vec![];
                        for it in l.clone() {
                            self.vars
                                .push(BTreeMap::from([("it".to_string(), it.clone())]));
                            let r = self.eval(x);
                            self.vars.pop();
                            let r = r?;
                            match m.as_str() {
                                "find" if r.truthy() => return Ok(it),
                                "every" if !r.truthy() => return Ok(V::Bool(false)),
                                "find" | "every" => {}
                                _ => out.push(r),
                            }
                        }
                        match m.as_str() {
                            "find" => V::Null,
                            "every" => V::Bool(true),
                            _ => V::List(out),
                        }
                    }
                    (m, v) => panic!("the harness does not know {v:?}.{m}()"),
                }
            }
            Expr::Call(None, name, args, block, _) => self.call(name, args, block.as_deref())?,
        })
    }

    fn causes(&self, class: &str) -> V {
        let user = class.ends_with("UserIdCause");
        let timer = class.ends_with("TimerTriggerCause");
        match (&self.build.started_by, user, timer) {
            (Some(u), true, _) => V::List(vec![V::Map(BTreeMap::from([(
                "userId".to_string(),
                V::Str(u.clone()),
            )]))]),
            (None, _, true) => V::List(vec![V::Map(BTreeMap::new())]),
            _ => V::List(vec![]),
        }
    }

    fn call(&mut self, name: &str, args: &[Arg], block: Option<&[Stmt]>) -> R<V> {
        match name {
            "script" => {
                self.block(block.unwrap())?;
                Ok(V::Null)
            }
            "runStage" => {
                // The Jenkinsfile's one seam to the stage scripts; its body must be what this
                // harness does: withEnv(the map) { sh "bash scripts/pipeline/${script}" }.
                let (_, body) = self
                    .functions
                    .get("runStage")
                    .expect("def runStage")
                    .clone();
                let text = format!("{body:?}");
                assert!(
                    text.contains("withEnv") && text.contains("bash scripts/pipeline/${script}"),
                    "runStage no longer runs `bash scripts/pipeline/<script>` with its map as the environment: {text}"
                );
                let p = positional(args);
                let script = self.eval(p[0])?.text();
                let vars = match p.get(1) {
                    Some(m) => match self.eval(m)? {
                        V::Map(m) => m,
                        o => panic!("runStage map: {o:?}"),
                    },
                    None => BTreeMap::new(),
                };
                self.run_script(&script, &vars).map(|_| V::Null)
            }
            "sh" => {
                let cmd = self.eval(positional(args)[0])?.text();
                assert!(
                    cmd.starts_with("cargo build") || cmd.starts_with("bash scripts/test"),
                    "the harness runs stage scripts through runStage only, not `sh {cmd}`"
                );
                self.out.not_run.push(cmd);
                Ok(V::Null)
            }
            "echo" => {
                let m = self.eval(positional(args)[0])?.text();
                self.out.log += &format!("echo: {m}\n");
                Ok(V::Null)
            }
            "junit" | "archiveArtifacts" => Ok(V::Null),
            "readFile" => {
                let p = self.eval(positional(args)[0])?.text();
                let path = self.workspace.join(&p);
                Ok(V::Str(std::fs::read_to_string(&path).map_err(|e| {
                    Flow::Failed(format!("readFile {}: {e}", path.display()))
                })?))
            }
            "credentials" => {
                let id = self.eval(positional(args)[0])?.text();
                Ok(V::Str(
                    self.build
                        .credentials
                        .get(&id)
                        .unwrap_or_else(|| panic!("no credential {id} in the build's store"))
                        .clone(),
                ))
            }
            "input" => {
                let msg = self.eval(named(args, "message").expect("input(message:)"))?;
                assert!(
                    named(args, "submitterParameter").is_some(),
                    "input without submitterParameter: the approver would not be known"
                );
                match self.approvals.pop_front() {
                    Some(who) => {
                        self.out.log += &format!("input: {} → {who}\n", msg.text());
                        Ok(V::Str(who))
                    }
                    None => Err(Flow::Failed(format!("input `{}`: aborted", msg.text()))),
                }
            }
            "error" => Err(Flow::Failed(self.eval(positional(args)[0])?.text())),
            f if self.functions.contains_key(f) => {
                let (params, body) = self.functions[f].clone();
                let p = positional(args);
                let mut scope = BTreeMap::new();
                for (i, pn) in params.iter().enumerate() {
                    let v = match p.get(i) {
                        Some(e) => self.eval(e)?,
                        None => V::Null,
                    };
                    scope.insert(pn.clone(), v);
                }
                self.vars.push(scope);
                let r = self.block(&body);
                self.vars.pop();
                r.map(|_| V::Null)
            }
            other => panic!("the harness does not know the step {other}()"),
        }
    }

    fn run_script(&mut self, script: &str, vars: &BTreeMap<String, V>) -> R<()> {
        let file = script.split_whitespace().next().unwrap().to_string();
        assert!(
            self.workspace
                .join("scripts/pipeline")
                .join(&file)
                .is_file(),
            "the Jenkinsfile runs scripts/pipeline/{file}, which the workspace does not have"
        );
        let timeout = *self.timeouts.last().unwrap();
        let mut cmd = std::process::Command::new("bash");
        cmd.arg("-c")
            .arg(format!("bash scripts/pipeline/{script}"))
            .current_dir(&self.workspace)
            .envs(self.env_all())
            .envs(vars.iter().map(|(k, v)| (k.clone(), v.text())))
            .envs(&self.build.overrides)
            .stdin(std::process::Stdio::null());
        let started = std::time::Instant::now();
        let out = super::run_bounded(cmd, timeout);
        let code = out.0;
        self.out.log += &format!(
            "--- {script} (exit {code}, {:.1}s)\n{}\n",
            started.elapsed().as_secs_f64(),
            out.1
        );
        self.out.scripts.push((script.to_string(), code));
        if code != 0 {
            // The failed checks of the stage's reports (its stdout went to JSON files).
            let reports = self
                .workspace
                .join(self.env_all().get("REPORTS").cloned().unwrap_or_default());
            for e in std::fs::read_dir(&reports).into_iter().flatten().flatten() {
                let Ok(text) = std::fs::read_to_string(e.path()) else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                for c in v["checks"].as_array().into_iter().flatten() {
                    if c["status"] != "ok" && c["status"] != "skip" {
                        self.out.log += &format!(
                            "  {}: [{}] {} — {}\n",
                            e.file_name().to_string_lossy(),
                            c["status"].as_str().unwrap_or("?"),
                            c["name"].as_str().unwrap_or("?"),
                            c["message"].as_str().unwrap_or("")
                        );
                    }
                }
            }
        }
        if code == 0 {
            Ok(())
        } else {
            Err(Flow::Failed(format!("{file} exited {code}")))
        }
    }
}

/// The stage paths a build would run for each `PIPE`, read from the Jenkinsfile: every stage
/// whose `when` holds (evaluated with the parameters' defaults and `env.PIPE`), nested stages
/// included, with each stage's lock and timeout.
pub fn stage_lists(jenkinsfile: &str, pipes: &[&str]) -> BTreeMap<String, Vec<String>> {
    let file = groovy::parse(jenkinsfile).expect("the Jenkinsfile parses");
    let mut out = BTreeMap::new();
    for pipe in pipes {
        let mut r = Runner::new(Path::new("."), Build::default());
        let pipeline = groovy::section(&file, "pipeline").unwrap();
        r.parameters(groovy::section(pipeline, "parameters").unwrap());
        r.env.insert("PIPE".into(), pipe.to_string());
        let mut list = vec![];
        fn walk(r: &mut Runner, path: &str, block: &[Stmt], list: &mut Vec<String>) {
            if let Some(w) = groovy::section(block, "when") {
                let [Stmt::Expr(cond)] = groovy::section(w, "expression").unwrap() else {
                    panic!()
                };
                if !r.eval(cond).expect("when").truthy() {
                    return;
                }
            }
            let mut tags = vec![];
            if let Some(o) = groovy::section(block, "options") {
                let locks = r.out.locks.len();
                match r.options(o) {
                    Some(t) => tags.push(format!("timeout {} min", t.as_secs() / 60)),
                    None => tags.push("NO TIMEOUT".into()),
                }
                tags.extend(r.out.locks.drain(locks..).map(|l| format!("lock {l}")));
            } else {
                tags.push("NO TIMEOUT".into());
            }
            list.push(format!("{path} [{}]", tags.join(", ")));
            if let Some(children) = groovy::section(block, "stages") {
                for (a, b) in groovy::sections(children, "stage") {
                    let name = lit(positional(a)[0]).unwrap();
                    walk(r, &format!("{path} / {name}"), b, list);
                }
            }
        }
        for (name, block) in top_stages(&file) {
            walk(&mut r, &name, block, &mut list);
        }
        out.insert(pipe.to_string(), list);
    }
    out
}
