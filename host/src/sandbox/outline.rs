//! What can be told about a component before compiling it, which takes
//! seconds for a Python or JavaScript guest: the names of its own imports
//! and exports, and the memory it needs at start.

use anyhow::Context as _;
use wasmparser::{Parser, Payload};

/// The top-level imports and exports of a component, read without
/// compiling it.
#[derive(Debug, Default)]
pub struct Outline {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// The largest initial size, in bytes, of a memory its modules define:
    /// a memory cap below it fails every instance at start.
    pub memory_at_start: u64,
}

impl Outline {
    /// Read the names of `bytes`' own imports and exports, not those of
    /// the modules and components nested in it, and what its modules'
    /// memories start at.
    pub fn read(bytes: &[u8]) -> anyhow::Result<Self> {
        let mut outline = Outline::default();
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.context("it is not a valid WebAssembly component")? {
                Payload::Version { .. } => depth += 1,
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(imports) if depth == 1 => {
                    for import in imports {
                        outline.imports.push(full_name(import?.name));
                    }
                }
                Payload::ComponentExportSection(exports) if depth == 1 => {
                    for export in exports {
                        outline.exports.push(full_name(export?.name));
                    }
                }
                Payload::MemorySection(memories) => {
                    for memory in memories {
                        let memory = memory?;
                        let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                        let bytes = memory.initial.saturating_mul(page);
                        outline.memory_at_start = outline.memory_at_start.max(bytes);
                    }
                }
                _ => {}
            }
        }
        Ok(outline)
    }
}

/// An import's or export's name with its version, however it is encoded.
fn full_name(name: wasmparser::ComponentExternName<'_>) -> String {
    format!("{}{}", name.name, name.version_suffix.unwrap_or_default())
}
