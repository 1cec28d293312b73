"""ctlwire under the official Python SDK: `CtlwireTransport` for ``claude_agent_sdk``.

``query(prompt=p, options=o, transport=CtlwireTransport(p, o))`` (or
``ClaudeSDKClient(o, transport=...)``) runs the CLI the SDK would run, on ctlwire's
`SubprocessTransport`. Needs the ``ctlwire[sdk]`` extra; ``import ctlwire`` never loads
this package or the SDK.
"""

from .errors import BadCLIOutput
from .launch import Launch, build_launch
from .transport import CtlwireTransport

__all__ = ["BadCLIOutput", "CtlwireTransport", "Launch", "build_launch"]
