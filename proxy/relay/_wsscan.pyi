# The native core of the frame scanner (proxy/relay/_wsscan.c); see wsframes.FrameRules.
from strangler.proxy.relay.wsframes import Scan

class ScanCore:
    def feed(self, data: bytes | bytearray | memoryview, /) -> Scan: ...

def configure(
    scan: type[Scan], client: dict[bytes, int], server: dict[bytes, int], longest: int, /
) -> None: ...
