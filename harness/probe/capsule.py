"""The capsule: the host's GL/Vulkan stack loaded into a dlmopen() link-map namespace of its own.

Runs *inside* the sandbox with the standard library and ctypes only, beside the probe that
imports it. The app's namespace never sees a host library; the capsule's calls of dlopen() are
redirected into the capsule, as libcapsule does."""
import ctypes
import json
import os
import struct

from probelib import ProbeError, declare

RTLD_NOW, RTLD_GLOBAL = 2, 0x100
LM_ID_NEWLM = -1
RTLD_DI_LMID, RTLD_DI_LINKMAP = 1, 2
CAPSULE_ENV = "GPU_HARNESS_CAPSULE"
# test hook: leave the capsule's dlopen alone
CAPSULE_NO_REDIRECT_ENV = "GPU_HARNESS_CAPSULE_NO_REDIRECT"
PROT_READ, PROT_WRITE = 1, 2
SHT_RELA = 4
R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT = 6, 7


class LinkMap(ctypes.Structure):
    _fields_ = [("l_addr", ctypes.c_void_p), ("l_name", ctypes.c_char_p), ("l_ld", ctypes.c_void_p),
                ("l_next", ctypes.c_void_p), ("l_prev", ctypes.c_void_p)]


def elf_imports(path, wanted):
    """(GOT offset, symbol) of each x86-64 relocation in `path` that binds a symbol in `wanted`."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or struct.unpack_from("<H", data, 18)[0] != 62:
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    found = []
    for section in sections:
        if section[1] != SHT_RELA or section[6] >= len(sections):
            continue
        symtab = sections[section[6]]
        strtab = sections[symtab[6]] if symtab[6] < len(sections) else None
        if strtab is None:
            continue
        for offset in range(section[4], section[4] + section[5], 24):
            r_offset, r_info, _ = struct.unpack_from("<QQq", data, offset)
            if r_info & 0xFFFFFFFF not in (R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT):
                continue
            st_name, = struct.unpack_from("<I", data, symtab[4] + (r_info >> 32) * 24)
            end = data.index(b"\0", strtab[4] + st_name)
            name = data[strtab[4] + st_name:end].decode("ascii", "replace")
            if name in wanted:
                found.append((r_offset, name))
    return found


class Capsule:
    """The host's GL stack in a link-map namespace of its own (dlmopen(LM_ID_NEWLM)), as
    libcapsule does: the manifest lists the host's libraries, dependencies first, so each
    DT_NEEDED name is found among what the namespace already holds; libc is the runtime's,
    loaded anew into the namespace. The app's own namespace never sees a host library."""

    def __init__(self, manifest_path):
        with open(manifest_path) as handle:
            manifest = json.load(handle)
        libdl = self.libdl()
        dlmopen = declare(libdl, "dlmopen", ctypes.c_void_p, ctypes.c_long, ctypes.c_char_p,
                          ctypes.c_int)
        dlerror = declare(libdl, "dlerror", ctypes.c_char_p)
        dlinfo = declare(libdl, "dlinfo", ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                         ctypes.c_void_p)
        self.lmid = None
        handles = {}
        for path in manifest["load"]:
            handle = dlmopen(LM_ID_NEWLM if self.lmid is None else self.lmid, path.encode(),
                             RTLD_NOW)
            if not handle:
                said = dlerror()
                raise ProbeError("capsule: dlmopen %s: %s" % (path, said.decode("utf-8",
                                                                                "replace")
                                                              if said else "?"))
            if self.lmid is None:
                lmid = ctypes.c_long()
                dlinfo(handle, RTLD_DI_LMID, ctypes.byref(lmid))
                self.lmid = lmid.value
            handles[path] = handle
        self.entry = {name: ctypes.CDLL(path, handle=handles[path]) for name,
                      path in manifest["entry"].items()}
        self.loaded = len(handles)
        self.dlmopen, self.dlerror, self.dlinfo = dlmopen, dlerror, dlinfo
        self.program_dlopen = declare(libdl, "dlopen", ctypes.c_void_p, ctypes.c_char_p,
                                      ctypes.c_int)
        self.calls = []
        self.redirected = ([] if os.environ.get(CAPSULE_NO_REDIRECT_ENV)
                           else self.redirect_dlopen(handles))

    def redirect_dlopen(self, handles):
        """Point the capsule's calls of dlopen() at dlmopen() into the capsule, without
        RTLD_GLOBAL. Mesa opens its DRI driver with RTLD_GLOBAL, and glibc has no global scope in
        a dlmopen() namespace: unpatched, that dlopen crashes in add_to_global_resize. This is
        what libcapsule does too (it rewrites the capsule's relocations for dlopen). dlopen(NULL)
        still means the program: LLVM's JIT asks for it, and crashes on anything else."""
        libc = ctypes.CDLL(None)
        mprotect = declare(libc, "mprotect", ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.c_int)
        page = os.sysconf("SC_PAGE_SIZE")
        self.callback = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p,
                                         ctypes.c_int)(self.capsule_dlopen)
        address = ctypes.cast(self.callback, ctypes.c_void_p).value
        patched = []
        for path, handle in handles.items():
            link = ctypes.POINTER(LinkMap)()
            if self.dlinfo(handle, RTLD_DI_LINKMAP, ctypes.byref(link)) != 0:
                continue
            base = link.contents.l_addr or 0
            for offset, _ in elf_imports(path, ("dlopen",)):
                slot = base + offset
                start = slot - slot % page
                if mprotect(start, page * 2 if slot % page > page - 8 else page,
                            PROT_READ | PROT_WRITE) != 0:
                    raise ProbeError("capsule: cannot make the GOT of %s writable" % path)
                ctypes.c_void_p.from_address(slot).value = address
                patched.append(os.path.basename(path))
        return sorted(set(patched))

    def capsule_dlopen(self, name, flags):
        self.calls.append(name.decode("utf-8", "replace") if name else None)
        if name is None:  # "the program itself" (LLVM asks, to look up symbols): the real answer
            return self.program_dlopen(None, flags) or None
        return self.dlmopen(self.lmid, name, flags & ~RTLD_GLOBAL) or None

    def namespaces(self):
        """The libraries of each link-map namespace, from the dynamic linker's own lists: the
        program's (LM_ID_BASE) and the capsule's. The program's must hold none of the host's."""
        return {"app": self.chain(self.program_dlopen(None, RTLD_NOW)),
                "capsule": self.chain(next(iter(self.entry.values()))._handle)}

    def chain(self, handle):
        link = ctypes.POINTER(LinkMap)()
        if not handle or self.dlinfo(handle, RTLD_DI_LINKMAP, ctypes.byref(link)) != 0 or not link:
            return []
        node = link.contents
        while node.l_prev:  # to the head of this namespace's list
            node = LinkMap.from_address(node.l_prev)
        names = []
        while True:
            if node.l_name:
                names.append(node.l_name.decode("utf-8", "replace"))
            if not node.l_next:
                return names
            node = LinkMap.from_address(node.l_next)

    @staticmethod
    def libdl():
        program = ctypes.CDLL(None)
        if hasattr(program, "dlmopen"):
            return program
        return ctypes.CDLL("libdl.so.2")  # glibc < 2.34 keeps dlmopen there

    def library(self, name):
        if name not in self.entry:
            raise ProbeError("capsule: no %s in the manifest" % name)
        return self.entry[name]
