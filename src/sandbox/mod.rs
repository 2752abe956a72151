//! The Discord sandbox: REST v10 + gateway on 127.0.0.1 that the unmodified serenity client
//! talks to. Not yet: built by the sandbox issue.
