//! Records the commit the binary is built from, for `fednode_build_info`
//! and `GET /version`: `FEDNODE_GIT_SHA` when set (a container build has no
//! `.git`), else `git rev-parse`, else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FEDNODE_GIT_SHA");
    // A new commit moves the branch HEAD points to.
    let mut watch = vec![".git/HEAD".to_string(), ".git/packed-refs".to_string()];
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(r) = head.trim().strip_prefix("ref: ") {
            watch.push(format!(".git/{r}"));
        }
    }
    for f in watch.iter().filter(|f| std::path::Path::new(f).exists()) {
        println!("cargo:rerun-if-changed={f}");
    }
    let sha = std::env::var("FEDNODE_GIT_SHA")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FEDNODE_GIT_SHA={sha}");
}
