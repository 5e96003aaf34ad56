//! `cementleak phantom` (under construction).

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`phantom` is not implemented yet")
}
