#!/usr/bin/env python3
# call-loops.py - prints every loop in the file-to-file call graph of the product code, read from a build's object files.
#
# Usage: scripts/call-loops.py [-v] [BUILD_DIR]   (BUILD_DIR defaults to build)
# For each object of the dlq_* libraries, nm gives the symbols it defines and
# those it leaves undefined; an undefined symbol another object defines is a
# call arrow from one source file to the other. Loops are the strongly
# connected components of more than one file. Exits 1 when there is a loop.
# -v also prints every file's arrows.
import glob
import os
import subprocess
import sys

def main(argv):
    verbose = '-v' in argv
    args = [a for a in argv if a != '-v']
    build = args[0] if args else 'build'
    objs = sorted(glob.glob(os.path.join(build, '*', 'CMakeFiles', 'dlq_*.dir', '*.o')) +
                  glob.glob(os.path.join(build, 'clients', '*', 'CMakeFiles', 'dlq_*.dir', '*.o')))
    if not objs:
        sys.exit(f'call-loops: no object files under {build}/*/CMakeFiles/dlq_*.dir/')
    defs, undefs = {}, {}
    for o in objs:
        key = os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(o)))) + '/' + \
            os.path.basename(o)[:-len('.o')]
        d, u = set(), set()
        for line in subprocess.run(['nm', o], capture_output=True, text=True, check=True).stdout.splitlines():
            p = line.split()
            if len(p) == 3 and p[1] in 'TDBR':
                d.add(p[2])
            elif len(p) == 2 and p[0] == 'U':
                u.add(p[1])
        defs[key], undefs[key] = d, u
    owner = {s: k for k, d in defs.items() for s in d}
    graph = {k: sorted({owner[s] for s in u if s in owner and owner[s] != k}) for k, u in undefs.items()}
    if verbose:
        for k in sorted(graph):
            print(k, '->', ', '.join(graph[k]) or '-')
    # Tarjan's strongly connected components, iteratively.
    index, low, stack, on, loops, n = {}, {}, [], set(), [], 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = n
                n += 1
                stack.append(v)
                on.add(v)
            recurse = False
            for j in range(i, len(graph[v])):
                w = graph[v][j]
                if w not in index:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    loops.append(sorted(comp))
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
    print(f'{len(graph)} files, {sum(len(a) for a in graph.values())} call arrows, {len(loops)} loops')
    for comp in loops:
        print('loop:', ' '.join(comp))
        for a in comp:
            for b in graph[a]:
                if b in comp:
                    syms = sorted(s for s in undefs[a] if owner.get(s) == b)
                    print(f'  {a} -> {b}: {" ".join(syms)}')
    return 1 if loops else 0

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
