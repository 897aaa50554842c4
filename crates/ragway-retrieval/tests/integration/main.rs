//! ragway-retrieval's integration tests, one binary: the FAISS store and its HNSW deletes, crash
//! safety under SIGKILL, compatibility with Python's FAISS and LangChain, the file readers,
//! the pgvector store against a real PostgreSQL, the local reranker against a reference, and
//! the Bedrock knowledge base retriever against the bedrock-agent-runtime fake.

// Helpers outside #[test] functions panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bedrock_kb;
mod crash;
mod deletes;
mod keywords;
mod langchain;
mod pgvector;
mod python;
mod readers;
mod rerank;
mod store;
mod support;
