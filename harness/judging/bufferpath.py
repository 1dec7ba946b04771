"""How a client's frames travelled to the display server: the buffer path read from a Wayland
client's protocol trace (WAYLAND_DEBUG=1), or from what an X11 client saw of itself.

Wayland: wl_shm (a pool, a buffer in it), zwp_linux_dmabuf_v1 (params, a plane each, then
create or create_immed) or wl_drm; the path is that of the buffers attached to surfaces, since a
client makes buffers it never shows (a cursor theme's pool). libwayland up to 1.22 writes
`[ 1234.567]  -> wl_shm@5.create_pool(...)`; 1.23 names the event queue and writes `#` for `@`:
`[ 1234.567] {mesa egl surface queue}  -> wl_shm#5.create_pool(...)`, which tells the driver's
requests from the application's own. X11: MIT-SHM segments (SysV) the client maps after
presenting are shm, dma-bufs are DRI3's, and neither means the frames went by XPutImage."""
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

LINE = re.compile(r"^\[\s*(?P<time>\d+\.\d+)\]\s+(?:\{(?P<queue>[^}]*)\}\s+)?(?:discarded\s+)?"
                  r"(?P<sent>->\s+)?(?P<interface>\w+)(?P<mark>[@#])(?P<id>\d+)\."
                  r"(?P<message>\w+)\((?P<args>.*)\)\s*$")
OBJECT = re.compile(r"(?:\w+|\[unknown\])[@#](\d+)")
ARGUMENT = re.compile(r'"[^"]*"|[^,]+')
SHM_FORMATS = {0: "ARGB8888", 1: "XRGB8888"}  # wl_shm's own codes; the others are DRM fourccs
FOURCCS = {"AR24": "ARGB8888", "XR24": "XRGB8888", "AB24": "ABGR8888", "XB24": "XBGR8888",
           "RA24": "RGBA8888", "RX24": "RGBX8888", "BA24": "BGRA8888", "BX24": "BGRX8888",
           "AR30": "ARGB2101010", "XR30": "XRGB2101010", "AB30": "ABGR2101010",
           "XB30": "XBGR2101010", "RG16": "RGB565", "AB4H": "ABGR16161616F",
           "XB4H": "XBGR16161616F", "NV12": "NV12"}
# request -> (path, index of width, height and format among its arguments)
CREATES = {("wl_shm_pool", "create_buffer"): ("shm", 2, 3, 5),
           ("zwp_linux_buffer_params_v1", "create_immed"): ("dmabuf", 1, 2, 3),
           ("wl_drm", "create_buffer"): ("wl_drm", 2, 3, 5),
           ("wl_drm", "create_planar_buffer"): ("wl_drm", 2, 3, 4),
           ("wl_drm", "create_prime_buffer"): ("wl_drm", 2, 3, 4)}
COUNTED = {"commits": ("->", "wl_surface", "commit"), "frame_callbacks": ("->", "wl_surface",
                                                                           "frame"),
           "releases": ("", "wl_buffer", "release"), "pools": ("->", "wl_shm", "create_pool"),
           "dmabuf_planes": ("->", "zwp_linux_buffer_params_v1", "add"),
           "presented": ("", "wp_presentation_feedback", "presented"),
           "discarded": ("", "wp_presentation_feedback", "discarded")}
BUFFER_REQUESTS = {"wl_shm.create_pool", "wl_shm_pool.create_buffer",
                   "zwp_linux_buffer_params_v1.add", "zwp_linux_buffer_params_v1.create",
                   "zwp_linux_buffer_params_v1.create_immed", "wl_drm.create_buffer",
                   "wl_drm.create_planar_buffer", "wl_drm.create_prime_buffer", "wl_surface.attach"}


@dataclass(frozen=True)
class Buffer:
    path: str  # shm | dmabuf | wl_drm
    width: int
    height: int
    format: str


@dataclass
class BufferPath:
    display: str  # wayland | x11
    source: str  # trace (libwayland's, with its format: 1.21 or 1.23) | probe (its own facts)
    paths: List[str] = field(default_factory=list)  # how the shown frames went, most used first
    created: Dict[str, int] = field(default_factory=dict)  # buffers made, per path
    attached: Dict[str, int] = field(default_factory=dict)  # attaches of a buffer, per path
    sizes: List[Tuple[int, int]] = field(default_factory=list)  # of the attached buffers
    formats: List[str] = field(default_factory=list)  # of the attached buffers
    attaches: int = 0
    commits: int = 0
    frame_callbacks: int = 0
    releases: int = 0
    pools: int = 0
    dmabuf_planes: int = 0
    presented: int = 0
    discarded: int = 0
    offered: Dict[str, int] = field(default_factory=dict)  # the compositor's globals: version
    bound: Dict[str, int] = field(default_factory=dict)  # the globals the client bound
    queues: Dict[str, List[str]] = field(default_factory=dict)  # buffer request -> its queues
    trace_format: Optional[str] = None  # 1.21 (ids with @) | 1.23 (# and queue names)
    other_lines: int = 0  # lines that are not protocol: the driver's and the program's own
    mappings: Dict[str, int] = field(default_factory=dict)  # X11: what the client mapped

    def to_dict(self) -> dict:
        data = asdict(self)
        data["sizes"] = [list(size) for size in self.sizes]
        return data


def format_name(code: int, shm: bool) -> str:
    """A buffer format by its name: wl_shm's two own codes, else a DRM fourcc."""
    if shm and code in SHM_FORMATS:
        return SHM_FORMATS[code]
    fourcc = code.to_bytes(4, "little").decode("latin-1")
    if fourcc in FOURCCS:
        return FOURCCS[fourcc]
    return fourcc if fourcc.isprintable() and fourcc.strip() else f"0x{code:08x}"


def arguments(text: str) -> List[str]:
    return [part.strip() for part in ARGUMENT.findall(text)]


def object_id(text: str) -> Optional[int]:
    match = OBJECT.search(text)
    return int(match.group(1)) if match else None


def number(text: str) -> int:
    return int(text.split()[-1])  # `fd 5` -> 5


class TraceReader:
    """One pass over a trace: buffers by id (ids are reused after they are deleted, so the
    latest made under an id is the one attached), and the counts."""

    def __init__(self) -> None:
        self.result = BufferPath("wayland", "trace")
        self.buffers: Dict[int, Buffer] = {}
        self.params: Dict[int, Tuple[int, int, str]] = {}  # dmabuf params -> size and format
        self.shown: List[Buffer] = []

    def line(self, text: str) -> None:
        match = LINE.match(text)
        if not match:
            self.result.other_lines += bool(text.strip())
            return
        result = self.result
        result.trace_format = result.trace_format or ("1.23" if match["mark"] == "#" else "1.21")
        sent = "->" if match["sent"] else ""
        interface, message = match["interface"], match["message"]
        args = arguments(match["args"])
        for name, key in COUNTED.items():
            if key == (sent, interface, message):
                setattr(result, name, getattr(result, name) + 1)
        request = f"{interface}.{message}"
        if sent and match["queue"] and request in BUFFER_REQUESTS:
            queues = result.queues.setdefault(request, [])
            if match["queue"] not in queues:
                queues.append(match["queue"])
        if request == "wl_registry.global" and not sent and len(args) == 3:
            result.offered.setdefault(args[1].strip('"'), int(args[2]))
        elif request == "wl_registry.bind" and sent and len(args) >= 3:
            result.bound[args[1].strip('"')] = int(args[2])
        elif sent and (interface, message) in CREATES:
            self.created(CREATES[(interface, message)], args)
        elif request == "zwp_linux_buffer_params_v1.create" and sent and len(args) >= 3:
            self.params[int(match["id"])] = (number(args[0]), number(args[1]),
                                             format_name(number(args[2]), False))
        elif request == "zwp_linux_buffer_params_v1.created" and args:
            width, height, fmt = self.params.get(int(match["id"]), (0, 0, "unknown"))
            self.made(object_id(args[0]), Buffer("dmabuf", width, height, fmt))
        elif request == "wl_surface.attach" and sent:
            self.attach(object_id(args[0]) if args and args[0] != "nil" else None)

    def created(self, how: Tuple[str, int, int, int], args: List[str]) -> None:
        path, width, height, fmt = how
        if len(args) > max(width, height, fmt):
            self.made(object_id(args[0]),
                      Buffer(path, number(args[width]), number(args[height]),
                             format_name(number(args[fmt]), path == "shm")))

    def made(self, buffer_id: Optional[int], buffer: Buffer) -> None:
        self.result.created[buffer.path] = self.result.created.get(buffer.path, 0) + 1
        if buffer_id is not None:
            self.buffers[buffer_id] = buffer

    def attach(self, buffer_id: Optional[int]) -> None:
        if buffer_id is None:  # attach(nil): the surface unmapped
            return
        self.result.attaches += 1
        buffer = self.buffers.get(buffer_id)
        path = buffer.path if buffer else "unknown"
        self.result.attached[path] = self.result.attached.get(path, 0) + 1
        if buffer:
            self.shown.append(buffer)

    def finish(self) -> BufferPath:
        result = self.result
        result.paths = sorted(result.attached, key=lambda path: (-result.attached[path], path))
        result.sizes = sorted({(buffer.width, buffer.height) for buffer in self.shown})
        result.formats = sorted({buffer.format for buffer in self.shown})
        return result


def from_trace(lines: Iterable[str]) -> BufferPath:
    """The buffer path of a WAYLAND_DEBUG=1 client trace (libwayland 1.21 or 1.23 alike)."""
    reader = TraceReader()
    for text in lines:
        reader.line(text)
    return reader.finish()


def read_trace(path: Path) -> BufferPath:
    with open(path, errors="replace") as handle:
        return from_trace(handle)


DRI3_FENCE = "xshmfence"  # the memfd name of Mesa's DRI3 fences (libxshmfence)


def from_x11_facts(buffers: Mapping[str, object],
                   extensions: Union[Mapping[str, bool], Iterable[str], None] = None) -> BufferPath:
    """An X11 client's buffer path from what it maps after presenting, as the probe counts it in
    its /proc/self/maps (`sysv_segments`, `memfds` by name, `dmabufs`; or `sysv`, `memfd`,
    `dmabuf` counts) and the X extensions the server offered it (name -> present, or the names
    present; none given: all count as offered). MIT-SHM segments are SysV ones (Mesa's EGL and
    its X11 WSI attach them with shmget); a memfd is no evidence on X11: lavapipe maps its device
    memory as memfds ("allocation fd"), presenting by XPutImage or not; but an "xshmfence" memfd is
    Mesa's DRI3 loader's fence beside each buffer it hands the server as a dma-buf (DRI3
    PixmapFromBuffers: the client keeps no mapping of the buffer itself)."""
    def count(*keys: str) -> int:
        for key in keys:
            value = buffers.get(key)
            if isinstance(value, Mapping):
                return sum(int(n) for n in value.values())
            if isinstance(value, (int, float, str)):
                return int(value)
        return 0

    if extensions is None:
        offered = {"MIT-SHM": True, "DRI3": True}
    elif isinstance(extensions, Mapping):
        offered = {str(name): bool(present) for name, present in extensions.items()}
    else:
        offered = {str(name): True for name in extensions}
    memfds = buffers.get("memfds")
    fences = int(memfds.get(DRI3_FENCE, 0)) if isinstance(memfds, Mapping) else 0
    counts = {"sysv": count("sysv_segments", "sysv"), "memfd": count("memfds", "memfd"),
              "dmabuf": count("dmabufs", "dmabuf"), **({DRI3_FENCE: fences} if fences else {})}
    paths = [path for path, key, extension in (("dri3", DRI3_FENCE, "DRI3"),
                                               ("dmabuf", "dmabuf", "DRI3"),
                                               ("shm", "sysv", "MIT-SHM"))
             if counts.get(key) and offered.get(extension)]
    return BufferPath("x11", "probe", paths or ["putimage"], mappings=counts,
                      offered={name: 1 for name, present in offered.items() if present})
