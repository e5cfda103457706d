import os,re,sys
root='core/src'
mods={}
for dp,dn,fn in os.walk(root):
    for f in fn:
        if not f.endswith('.rs'): continue
        p=os.path.join(dp,f); rel=os.path.relpath(p,root)[:-3].split(os.sep)
        if rel[-1]=='mod': rel=rel[:-1]
        if rel==['lib']: rel=[]
        mods['::'.join(rel)]=p
def strip_tests(src):
    # drop #[cfg(test)] mod tests { ... } blocks (crudely: from '#[cfg(test)]\nmod' to end)
    m=re.search(r'#\[cfg\(test\)\]\s*(?:pub(?:\(crate\))? )?mod \w+ \{',src)
    return src[:m.start()] if m else src
def resolve(path):
    parts=path.split('::')
    for n in range(len(parts),0,-1):
        k='::'.join(parts[:n])
        if k in mods: return k
    return None
edges={}
for m,p in mods.items():
    if m=='testkit': continue
    src=strip_tests(open(p).read())
    src='\n'.join(l for l in src.split('\n') if not l.strip().startswith('//'))
    deps=set()
    # expand use crate::{a::{b,c},d}
    for u in re.finditer(r'crate::((?:\w+::)*)(\{[^;]*\}|\w+)',src):
        prefix=u.group(1); rest=u.group(2)
        if rest.startswith('{'):
            # crude: collect identifiers chains inside braces
            for item in re.findall(r'(\w+(?:::\w+)*)',rest):
                r=resolve((prefix+item).rstrip(':'))
                if r is not None: deps.add(r)
        else:
            r=resolve((prefix+rest).rstrip(':'))
            if r is not None: deps.add(r)
    # super:: references
    for u in re.finditer(r'super::(\w+)',src):
        base=m.split('::')[:-1] if not p.endswith('mod.rs') else m.split('::')[:-1]
        r=resolve('::'.join(base+[u.group(1)]))
        if r is not None: deps.add(r)
    deps.discard(m)
    # a module depending on its own ancestor (parent mod.rs) is not a cycle of interest: keep though
    edges[m]=deps
level=sys.argv[1] if len(sys.argv)>1 else 'file'
def top(m): return m.split('::')[0] if m else 'lib'
if level=='top':
    E={}
    for a,ds in edges.items():
        for b in ds:
            if top(a)!=top(b) and a!='' and b!='': E.setdefault(top(a),set()).add(top(b))
    edges=E
else:
    # ignore edges to ancestors (a child using its parent's re-exports) and from a parent to its own children
    E={}
    for a,ds in edges.items():
        E[a]={b for b in ds if not (a.startswith(b+'::') or b=='' or b.startswith(a+'::') or a=='')}
    edges=E
# Tarjan
idx={};low={};st=[];on=set();sccs=[];i=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        c=[]
        while True:
            w=st.pop();on.discard(w);c.append(w)
            if w==v:break
        sccs.append(c)
for v in list(edges): 
    if v not in idx: sc(v)
cyc=[c for c in sccs if len(c)>1]
print(level, 'modules:',len(edges),'cycles:',cyc)
