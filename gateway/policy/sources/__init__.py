"""Where a sidecar's policy file comes from: a file on disk, re-read when it changes or
on SIGHUP (`file`), or a file in a git repository, polled (`git`).

Both yield `SourceUpdate`s, the bytes as found and the origin a record carries, and
neither parses them: the runtime parses, verifies and activates, and keeps the policy
it has when a new one is refused. A source that cannot be read says so in its log and
yields nothing; the git source also keeps the last error for the status endpoint.
The git source loads dulwich only when used, so a sidecar fed by a file never does.
"""

from gateway.policy.sources.file import FileSource
from gateway.policy.sources.git import GitSource
from gateway.policy.sources.update import MAX_SOURCE_BYTES, PolicySource, SourceUpdate

__all__ = ["MAX_SOURCE_BYTES", "FileSource", "GitSource", "PolicySource", "SourceUpdate"]
