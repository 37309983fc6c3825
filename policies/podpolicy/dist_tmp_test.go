package podpolicy
import ("testing";"math/rand/v2";"sort";"fmt")
func TestTmpDist(t *testing.T){
 r := rand.New(rand.NewPCG(1,2)); counts := map[string]int{}
 for range 20000 { b := make([]byte, 80); for i := range b { b[i]=byte(r.IntN(256)) }
  pod, env, cfg := fuzzCase(b); res := Mutate(pod, env, cfg); counts["skip:"+res.Skipped.Label()]++; for _, a := range res.Applied { counts["applied:"+a]++ }; if res.DNSProxySkipped!="" {counts["proxyskip:"+res.DNSProxySkipped.Label()]++}
  st,_ := ParseStatus(res.Pod.Annotations[AnnotationStatus]); if st.DNSProxy!="" && len(res.Applied)>0 {counts["mode:"+string(st.DNSProxy)]++}
 }
 var keys []string; for k := range counts { keys = append(keys,k) }; sort.Strings(keys); for _, k := range keys { fmt.Println(k, counts[k]) }
}
